/* Stable identifiers: name-based UUIDs (RFC 4122 section 4.3, version 5,
 * SHA-1) and the keyed person hash (HMAC-SHA-256, RFC 2104/4231).
 *
 * The two namespaces below are part of the data contract: every case id and
 * event id ever stored or published was derived from them, so consumers can
 * recompute and de-duplicate. They were generated once at random
 * (systemd-id128 new -u) and must never change. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ids.h"

/* NS_CASE = 31575f85-488e-4d92-b478-9bc0789503b8 (never change) */
static const uint8_t ids_ns_case[16] = {
        0x31, 0x57, 0x5f, 0x85, 0x48, 0x8e, 0x4d, 0x92, 0xb4, 0x78, 0x9b, 0xc0, 0x78, 0x95, 0x03, 0xb8,
};
/* NS_EVENT = 0cba62f0-bee6-45b2-8d4c-97dfdb401a0b (never change) */
static const uint8_t ids_ns_event[16] = {
        0x0c, 0xba, 0x62, 0xf0, 0xbe, 0xe6, 0x45, 0xb2, 0x8d, 0x4c, 0x97, 0xdf, 0xdb, 0x40, 0x1a, 0x0b,
};

/* The digests, fetched once per process. OpenSSL 3 looks a digest up by name
 * on every EVP_DigestInit_ex(EVP_sha1()) and every HMAC() call (the
 * "implicit fetch"): 6-9 % of the daemon's main thread (bench/README.md).
 * Written only inside pthread_once, read-only after: safe from any thread. */
static pthread_once_t ids_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *ids_md_sha1, *ids_md_sha256;

static void ids_md_fetch(void) {
        ids_md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        ids_md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *ids_md(EVP_MD *const *which) {
        if (pthread_once(&ids_md_once, ids_md_fetch) != 0)
                return NULL;
        return *which;
}

static void ids_format(const uint8_t u[static 16], char ret[static UUID_STR_LEN]) {
        static const char hex[] = "0123456789abcdef";
        size_t j = 0;
        for (size_t i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        ret[j++] = '-';
                ret[j++] = hex[u[i] >> 4];
                ret[j++] = hex[u[i] & 0xf];
        }
        ret[j] = 0;
}

/* uuid5 over the concatenation of n parts, without building the string. */
static void ids_uuid5_parts(const uint8_t ns[static 16], const void *const *parts, const size_t *lens, size_t n,
                            char ret[static UUID_STR_LEN]) {
        uint8_t md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        const EVP_MD *sha1 = ids_md(&ids_md_sha1);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = sha1 && ctx && EVP_DigestInit_ex(ctx, sha1, NULL) && EVP_DigestUpdate(ctx, ns, 16);
        for (size_t i = 0; ok && i < n; i++)
                ok = lens[i] == 0 || EVP_DigestUpdate(ctx, parts[i], lens[i]);
        ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) && md_len >= 16;
        EVP_MD_CTX_free(ctx);
        /* Only an allocation failure inside libcrypto gets here; an id that is
         * not the right one would break de-duplication silently, so stop. */
        if (!ok)
                abort();

        md[6] = (uint8_t)((md[6] & 0x0f) | 0x50); /* RFC 4122 4.1.3: version 5 */
        md[8] = (uint8_t)((md[8] & 0x3f) | 0x80); /* RFC 4122 4.1.1: variant 10x */
        ids_format(md, ret);
}

void ids_uuid5(const uint8_t ns[static 16], const void *name, size_t len, char ret[static UUID_STR_LEN]) {
        const void *parts[] = {name};
        size_t lens[] = {len};
        ids_uuid5_parts(ns, parts, lens, 1, ret);
}

void ids_case_id(const char *referral_id, char ret[static UUID_STR_LEN]) {
        ids_uuid5(ids_ns_case, referral_id, strlen(referral_id), ret);
}

void ids_event_id(const char *case_id, const char *name, char ret[static UUID_STR_LEN]) {
        const void *parts[] = {case_id, "/", name};
        size_t lens[] = {strlen(case_id), 1, strlen(name)};
        ids_uuid5_parts(ids_ns_event, parts, lens, 3, ret);
}

/* HMAC-SHA-256 as RFC 2104 section 2 defines it, on the digest fetched once:
 * H((K ^ opad) || H((K ^ ipad) || text)), K the key zero-padded to the block
 * (64 bytes), hashed first when longer. OpenSSL 3.0's HMAC() fetches the MAC
 * and the digest by name on each call (960 ns here against 250 ns); the RFC
 * 4231 vectors in tests/unit/test-ids.c pin the result. */
#define HMAC_BLOCK 64                   /* SHA-256's block size (FIPS 180-4) */

int ids_person_key(const uint8_t *pepper, size_t pepper_len, const char *normalised,
                   uint8_t ret[static PERSON_KEY_LEN]) {
        if (!pepper || pepper_len == 0 || pepper_len > INT32_MAX || !normalised)
                return -EIO;
        const EVP_MD *sha256 = ids_md(&ids_md_sha256);
        if (!sha256 || EVP_MD_get_size(sha256) != PERSON_KEY_LEN || EVP_MD_get_block_size(sha256) != HMAC_BLOCK)
                return -EIO;

        uint8_t key[HMAC_BLOCK] = {0}, pad[HMAC_BLOCK], inner[PERSON_KEY_LEN];
        unsigned len = 0;
        bool ok = true;
        if (pepper_len > HMAC_BLOCK)
                ok = EVP_Digest(pepper, pepper_len, key, &len, sha256, NULL) && len == PERSON_KEY_LEN;
        else
                memcpy(key, pepper, pepper_len);

        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        ok = ok && ctx;
        for (size_t i = 0; i < HMAC_BLOCK; i++)
                pad[i] = key[i] ^ 0x36;
        ok = ok && EVP_DigestInit_ex(ctx, sha256, NULL) && EVP_DigestUpdate(ctx, pad, HMAC_BLOCK) &&
             EVP_DigestUpdate(ctx, normalised, strlen(normalised)) && EVP_DigestFinal_ex(ctx, inner, &len) &&
             len == PERSON_KEY_LEN;
        for (size_t i = 0; i < HMAC_BLOCK; i++)
                pad[i] = key[i] ^ 0x5c;
        ok = ok && EVP_DigestInit_ex(ctx, sha256, NULL) && EVP_DigestUpdate(ctx, pad, HMAC_BLOCK) &&
             EVP_DigestUpdate(ctx, inner, sizeof inner) && EVP_DigestFinal_ex(ctx, ret, &len) &&
             len == PERSON_KEY_LEN;
        EVP_MD_CTX_free(ctx);
        /* The pepper is secret; the inner hash is the identity number's keyed digest. */
        OPENSSL_cleanse(key, sizeof key);
        OPENSSL_cleanse(pad, sizeof pad);
        OPENSSL_cleanse(inner, sizeof inner);
        return ok ? 0 : -EIO;
}
