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

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "ids.h"

/* NS_CASE = 31575f85-488e-4d92-b478-9bc0789503b8 (never change) */
static const uint8_t ids_ns_case[16] = {
        0x31, 0x57, 0x5f, 0x85, 0x48, 0x8e, 0x4d, 0x92, 0xb4, 0x78, 0x9b, 0xc0, 0x78, 0x95, 0x03, 0xb8,
};
/* NS_EVENT = 0cba62f0-bee6-45b2-8d4c-97dfdb401a0b (never change) */
static const uint8_t ids_ns_event[16] = {
        0x0c, 0xba, 0x62, 0xf0, 0xbe, 0xe6, 0x45, 0xb2, 0x8d, 0x4c, 0x97, 0xdf, 0xdb, 0x40, 0x1a, 0x0b,
};

/* The digest and the MAC, fetched once per process. OpenSSL 3 looks a digest up by name
 * on every EVP_DigestInit_ex(EVP_sha1()) and every HMAC() call (the
 * "implicit fetch"): 6-9 % of the daemon's main thread (bench/README.md).
 * Written only inside pthread_once, read-only after: safe from any thread. */
static pthread_once_t ids_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *ids_md_sha1;
static EVP_MAC *ids_mac_hmac;
static pthread_key_t ids_ctx_key;
static bool ids_ctx_key_made;

/* Each thread's contexts, made at its first id and reused: a context made,
 * keyed and freed for every id cost about half of what the ids cost the
 * daemon (bench/README.md "The ids' contexts"). The HMAC context keeps the
 * pepper it was keyed with, and a copy to see that the next call's is the
 * same; freed, wiped, when the thread ends. */
typedef struct ids_ctx {
        EVP_MD_CTX *md;
        EVP_MAC_CTX *mac;
        uint8_t *pepper;
        size_t pepper_len;
} ids_ctx;

static void ids_ctx_free(void *p) {
        ids_ctx *c = p;
        if (!c)
                return;
        EVP_MD_CTX_free(c->md);
        EVP_MAC_CTX_free(c->mac);
        if (c->pepper) {
                explicit_bzero(c->pepper, c->pepper_len);
                free(c->pepper);
        }
        free(c);
}

static void ids_md_fetch(void) {
        ids_md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        ids_mac_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        ids_ctx_key_made = pthread_key_create(&ids_ctx_key, ids_ctx_free) == 0;
}

static bool ids_fetched(void) {
        return pthread_once(&ids_md_once, ids_md_fetch) == 0;
}

/* This thread's contexts, or NULL (out of memory). */
static ids_ctx *ids_ctx_get(void) {
        if (!ids_fetched() || !ids_ctx_key_made)
                return NULL;
        ids_ctx *c = pthread_getspecific(ids_ctx_key);
        if (c)
                return c;
        c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        if (pthread_setspecific(ids_ctx_key, c) != 0) {
                free(c);
                return NULL;
        }
        return c;
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
        ids_ctx *c = ids_ctx_get();
        if (c && !c->md)
                c->md = EVP_MD_CTX_new();
        EVP_MD_CTX *ctx = c ? c->md : NULL;
        bool ok = ids_md_sha1 && ctx && EVP_DigestInit_ex2(ctx, ids_md_sha1, NULL) && EVP_DigestUpdate(ctx, ns, 16);
        for (size_t i = 0; ok && i < n; i++)
                ok = lens[i] == 0 || EVP_DigestUpdate(ctx, parts[i], lens[i]);
        ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) && md_len >= 16;
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

int ids_outcome_key_check(const char *case_id, const char *referral_id, const void *key, size_t key_len) {
        char from_referral[UUID_STR_LEN] = "";
        if (referral_id && *referral_id)
                ids_case_id(referral_id, from_referral);
        const char *want = case_id && *case_id ? case_id : from_referral;
        if (*from_referral && strcmp(want, from_referral) != 0)
                return -EINVAL;
        if (!key || key_len != strlen(want) || memcmp(key, want, key_len) != 0)
                return -EBADMSG;
        return 0;
}

void ids_event_id(const char *case_id, const char *name, char ret[static UUID_STR_LEN]) {
        const void *parts[] = {case_id, "/", name};
        size_t lens[] = {strlen(case_id), 1, strlen(name)};
        ids_uuid5_parts(ids_ns_event, parts, lens, 3, ret);
}

/* HMAC-SHA-256 (RFC 2104) by OpenSSL's EVP_MAC, fetched once; the digest is
 * handed over as the fetched EVP_MD's name, which the provider finds in its
 * method cache. OpenSSL 3.0's one-shot HMAC() fetched both on every call. The
 * thread's context is keyed again only when the pepper differs from the one it
 * holds (a reload); otherwise EVP_MAC_init without a key starts a new MAC with
 * the key it has. */
static bool ids_mac_keyed(ids_ctx *c, const uint8_t *pepper, size_t pepper_len) {
        if (c->mac && c->pepper_len == pepper_len && memcmp(c->pepper, pepper, pepper_len) == 0)
                return EVP_MAC_init(c->mac, NULL, 0, NULL);
        uint8_t *copy = malloc(pepper_len);
        if (!copy)
                return false;
        memcpy(copy, pepper, pepper_len);
        if (c->pepper) {
                explicit_bzero(c->pepper, c->pepper_len);
                free(c->pepper);
        }
        c->pepper = copy;
        c->pepper_len = pepper_len;
        EVP_MAC_CTX_free(c->mac);
        c->mac = EVP_MAC_CTX_new(ids_mac_hmac);
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                OSSL_PARAM_construct_end(),
        };
        if (c->mac && EVP_MAC_init(c->mac, pepper, pepper_len, params))
                return true;
        c->pepper_len = 0; /* keyed with nothing: key again next time */
        return false;
}

int ids_person_key(const uint8_t *pepper, size_t pepper_len, const char *normalised,
                   uint8_t ret[static PERSON_KEY_LEN]) {
        if (!pepper || pepper_len == 0 || pepper_len > INT32_MAX || !normalised)
                return -EIO;
        ids_ctx *c = ids_ctx_get();
        if (!c || !ids_mac_hmac)
                return -EIO;
        size_t len = 0;
        bool ok = ids_mac_keyed(c, pepper, pepper_len) &&
                  EVP_MAC_update(c->mac, (const unsigned char *)normalised, strlen(normalised)) &&
                  EVP_MAC_final(c->mac, ret, &len, PERSON_KEY_LEN) && len == PERSON_KEY_LEN;
        return ok ? 0 : -EIO;
}

int ids_person_key_cmp(const void *a, const void *b) {
        return memcmp(a, b, PERSON_KEY_LEN);
}
