/* Kafka headers as one byte string, and a header that is an id (header_blob.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "header_blob.h"

static void put_be(uint8_t *p, uint32_t v, int n) {
        for (int i = n - 1; i >= 0; i--) {
                p[i] = (uint8_t)v;
                v >>= 8;
        }
}

static uint32_t get_be(const uint8_t *p, int n) {
        uint32_t v = 0;
        for (int i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

int header_blob_encode(const rd_kafka_headers_t *h, uint8_t **ret, size_t *ret_len) {
        *ret = NULL;
        *ret_len = 0;
        if (!h)
                return 0;
        size_t total = 0, n = 0;
        const char *name;
        const void *value;
        size_t size;
        while (rd_kafka_header_get_all(h, n, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                size_t name_len = strlen(name);
                if (name_len > 0xffff || size > 0xfffffffeU)
                        return -E2BIG;
                total += 2 + name_len + 4 + (value ? size : 0);
                n++;
        }
        if (n == 0)
                return 0;
        uint8_t *blob = malloc(total), *p = blob;
        if (!blob)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                rd_kafka_header_get_all(h, i, &name, &value, &size);
                size_t name_len = strlen(name);
                put_be(p, (uint32_t)name_len, 2);
                memcpy(p + 2, name, name_len);
                p += 2 + name_len;
                put_be(p, value ? (uint32_t)size : 0xffffffffU, 4);
                p += 4;
                if (value && size) {
                        memcpy(p, value, size);
                        p += size;
                }
        }
        *ret = blob;
        *ret_len = total;
        return 0;
}

int header_blob_decode(const uint8_t *blob, size_t len, rd_kafka_headers_t *h) {
        size_t i = 0;
        while (i < len) {
                if (len - i < 2)
                        return -EBADMSG;
                size_t name_len = get_be(blob + i, 2);
                i += 2;
                if (len - i < name_len + 4)
                        return -EBADMSG;
                const char *name = (const char *)blob + i;
                if (memchr(name, '\0', name_len))
                        return -EBADMSG;
                i += name_len;
                uint32_t size = get_be(blob + i, 4);
                i += 4;
                const void *value = NULL;
                if (size != 0xffffffffU) {
                        if (len - i < size)
                                return -EBADMSG;
                        value = blob + i;
                        i += size;
                }
                if (rd_kafka_header_add(h, name, (ssize_t)name_len, value, value ? (ssize_t)size : 0) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR)
                        return -EBADMSG;
        }
        return 0;
}

void header_id(const rd_kafka_headers_t *h, const char *name, char ret[static HEADER_ID_MAX + 1]) {
        ret[0] = '\0';
        const void *value;
        size_t size;
        if (!h || rd_kafka_header_get_last(h, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !value ||
            size == 0 || size > HEADER_ID_MAX)
                return;
        const unsigned char *v = value;
        for (size_t i = 0; i < size; i++)
                if (v[i] < 0x21 || v[i] > 0x7e)
                        return;
        memcpy(ret, v, size);
        ret[size] = '\0';
}
