/* retention-run CONFIG NOW: one pass of the daemon's retention purge
 * (daemon/retention.c) with that configuration, at NOW (RFC 3339), and the
 * counts it purged on stdout. Used to show that what survives the purge (the
 * report) is the same before and after it. */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "retention.h"
#include "store.h"

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: retention-run CONFIG NOW\n");
                return 64;
        }
        usec_t now;
        if (clock_parse_rfc3339(argv[2], &now) < 0) {
                fprintf(stderr, "retention-run: not an RFC 3339 time: %s\n", argv[2]);
                return 64;
        }
        char err[512];
        config *cfg = NULL;
        if (config_load(argv[1], &cfg, err, sizeof err) < 0) {
                fprintf(stderr, "retention-run: %s\n", err);
                return 1;
        }
        store *st = NULL;
        int r = store_connect(cfg->db_conninfo, cfg->db_password, &st, err, sizeof err);
        if (r < 0) {
                fprintf(stderr, "retention-run: %s\n", err);
                config_free(cfg);
                return 1;
        }
        retention_result res = {0};
        r = retention_run(st, cfg, now, &res);
        if (r < 0)
                fprintf(stderr, "retention-run: %s\n", store_last_error(st));
        else
                printf("referrals=%u cases=%u dead_letters=%u\n", res.referrals, res.cases, res.dead_letters);
        store_free(st);
        config_free(cfg);
        return r < 0 ? 1 : 0;
}
