# Throwaway certificate authorities and server certificates for tests (bash;
# source it, do not run it). Everything is made with openssl(1), in files under
# a directory the caller owns; nothing is installed anywhere.
#
#   tls_ca DIR [NAME]          a CA: DIR/ca.key (private), DIR/ca.pem (self-signed, CA:TRUE)
#   tls_server_cert CADIR OUT CN SAN
#                              a server certificate signed by CADIR's CA:
#                              OUT.key (PKCS#8, unencrypted, 0600), OUT.pem (the certificate),
#                              OUT.chain.pem (certificate then CA), for CN with the
#                              subjectAltName SAN (e.g. "DNS:localhost,IP:127.0.0.1")
#   tls_pem_keystore OUT PASSWORD
#                              for Kafka's ssl.keystore.type=PEM: OUT.keystore.pem, the key
#                              encrypted with PASSWORD (PKCS#8, as Kafka requires a key
#                              password for a PEM key store file) followed by OUT.chain.pem
#
# Keys are EC P-256: fast to make, and understood by OpenSSL (libpq, PostgreSQL,
# librdkafka) and by Java (Kafka's PEM key store). Certificates are valid from
# one hour ago (clocks of test machines drift) for two days.

_tls_openssl() {
        local out
        if ! out=$(openssl "$@" 2>&1); then
                printf 'tls: openssl %s failed:\n%s\n' "$1" "$out" >&2
                return 1
        fi
}

tls_ca() {
        local dir=${1:?tls_ca DIR [NAME]} name=${2:-allvarsd test CA $RANDOM}
        mkdir -p "$dir" || return 1
        (umask 077 && _tls_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key") ||
                return 1
        _tls_openssl req -x509 -new -key "$dir/ca.key" -out "$dir/ca.pem" -days 2 -sha256 \
                -subj "/O=allvarsd tests/CN=$name" \
                -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
                -addext "keyUsage=critical,keyCertSign,cRLSign" \
                -addext "subjectKeyIdentifier=hash"
}

tls_server_cert() {
        local ca=${1:?tls_server_cert CADIR OUT CN SAN} out=${2:?} cn=${3:?} san=${4:?}
        (umask 077 && _tls_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out.key") ||
                return 1
        _tls_openssl req -new -key "$out.key" -out "$out.csr" -subj "/O=allvarsd tests/CN=$cn" || return 1
        cat >"$out.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
EOF
        # A random serial (-set_serial) rather than a serial file beside the CA.
        _tls_openssl x509 -req -in "$out.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
                -set_serial "0x$(openssl rand -hex 16)" -days 2 -sha256 -extfile "$out.ext" \
                -out "$out.pem" || return 1
        cat "$out.pem" "$ca/ca.pem" >"$out.chain.pem"
        rm -f "$out.csr" "$out.ext"
        # The certificate really is what a verifying client will accept for CN.
        local check=-verify_hostname
        [[ $cn =~ ^[0-9.]+$|: ]] && check=-verify_ip
        _tls_openssl verify -CAfile "$ca/ca.pem" "$check" "$cn" "$out.pem"
}

tls_pem_keystore() {
        local out=${1:?tls_pem_keystore OUT PASSWORD} pass=${2:?}
        # Kafka decrypts PEM keys with SecretKeyFactory.getInstance(the PBE algorithm):
        # Java 17 has no "PBES2" factory (OpenSSL 3's default), but has the PKCS#12
        # PBEWithSHA1AndDESede. A throwaway key in a test: the cipher does not matter.
        (umask 077 && _tls_openssl pkcs8 -topk8 -in "$out.key" -out "$out.key.enc" \
                -v1 PBE-SHA1-3DES -passout "pass:$pass") || return 1
        (umask 077 && cat "$out.key.enc" "$out.chain.pem" >"$out.keystore.pem")
        rm -f "$out.key.enc"
}
