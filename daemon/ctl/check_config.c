/* allvarsctl check-config: the daemon's --check-config, for operators who run
 * it apart from the service. */
#include <stdio.h>
#include <string.h>

#include "common.h"

static const char check_config_usage[] =
        "Usage: allvarsctl check-config [--config PATH]\n"
        "Read the configuration like allvarsd --check-config: print the effective values (secrets\n"
        "masked) and exit 0, or name the file, line and key that is wrong and exit 1.\n\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH ")\n";

int ctl_check_config_main(int argc, char **argv) {
        ctl c;
        ctl_init(&c, "check-config", check_config_usage);
        int o;
        while ((o = ctl_getopt(&c, argc, argv, NULL)) != -1)
                return o == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);
        int r = ctl_only_connection_options(&c);
        if (r)
                return r;
        if (c.database)
                return ctl_usage_error(&c, "--database is not used here");

        const char *path = c.config_path ? c.config_path : CONFIG_DEFAULT_PATH;
        char err[512] = "";
        r = config_load(path, &c.cfg, err, sizeof err);
        if (r < 0) {
                ctl_fail(&c, "%s", err[0] ? err : strerror(-r));
                c.cfg = NULL;
                return CTL_EXIT_FAILURE;
        }
        r = config_check_deployment(c.cfg, err, sizeof err);
        if (r < 0) {
                ctl_fail(&c, "%s", err);
                ctl_done(&c);
                return CTL_EXIT_FAILURE;
        }
        config_dump(c.cfg, stdout);
        printf("# %s: OK\n", path);
        ctl_done(&c);
        return CTL_EXIT_OK;
}
