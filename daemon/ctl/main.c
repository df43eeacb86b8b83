/* allvarsctl: the operator's and developer's tool. A subcommand dispatcher:
 * each subcommand lives in daemon/ctl/<name>.c with its entry point in commands.h;
 * add it to the table below. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "identity.h"
#include "version.h"

static const ctl_command commands[] = {
        {"status", ctl_status_main, "instances, the relay, consumer positions and lag, the daemon's figures"},
        {"check", ctl_check_main, "a health check for monitoring systems (exit 0, 1, 2, 3 and one line)"},
        {"cases", ctl_cases_main, "one line per case (--overdue, --district, --state)"},
        {"case", ctl_case_main, "one case in full: decision, explanation, audit trail"},
        {"override", ctl_override_main, "a social worker's override of a decision (audited)"},
        {"report", ctl_report_main, "follow-up figures per district and period (text, CSV, JSON, HTML)"},
        {"dead-letters", ctl_dead_letters_main, "list, show or replay messages that were not accepted"},
        {"decide", ctl_decide_main, "run the rules on one encoded PoliceReferral and print the decision"},
        {"events", ctl_events_main, "print the events on allvarsd's output topics"},
        {"migrate", ctl_migrate_main, "apply the database migrations not yet applied"},
        {"check-config", ctl_check_config_main, "read the configuration and print the effective values"},
};

static void usage(FILE *f) {
        fprintf(f, "Usage: allvarsctl COMMAND [OPTIONS]...\n\nCommands:\n");
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\nRun 'allvarsctl COMMAND --help' for a command's options; 'allvarsctl --version' for the version.\n");
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *name = argv[1];
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
                usage(stdout);
                return 0;
        }
        if (strcmp(name, "--version") == 0) {
                printf("allvarsctl %s\n", ALLVARSD_VERSION);
                return 0;
        }
        /* Ages and report dates are on the Europe/Stockholm calendar (docs/domain.md "Age"). */
        int r = tz_init();
        if (r < 0) {
                fprintf(stderr, "allvarsctl: the time zone Europe/Stockholm is not available (is tzdata installed?)\n");
                return 1;
        }
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (strcmp(name, commands[i].name) == 0)
                        return commands[i].main(argc - 1, argv + 1);
        fprintf(stderr, "allvarsctl: unknown command '%s'; see 'allvarsctl --help'\n", name);
        return 2;
}
