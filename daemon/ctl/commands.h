/* allvarsctl: one binary, one subcommand per daemon/ctl/<name>.c. Each
 * subcommand has an entry point here, called with argv[0] = the subcommand's
 * name, returning the process exit code; main.c dispatches through one table.
 * Their plumbing is in common.h, print.h and kafka.h. */
#pragma once

typedef struct ctl_command {
        const char *name;               /* as typed: "decide" */
        int (*main)(int argc, char **argv);
        const char *summary;            /* one line for `allvarsctl --help` */
} ctl_command;

/* Run the rules on one encoded PoliceReferral (decide.c). */
int ctl_decide_main(int argc, char **argv);
/* Print the events of allvarsd's output topics (events.c). */
int ctl_events_main(int argc, char **argv);
/* The database subcommands. */
int ctl_status_main(int argc, char **argv);
/* The monitoring-plugins health check (check.c). */
int ctl_check_main(int argc, char **argv);
int ctl_cases_main(int argc, char **argv);
int ctl_case_main(int argc, char **argv);
int ctl_override_main(int argc, char **argv);
int ctl_dead_letters_main(int argc, char **argv);
int ctl_migrate_main(int argc, char **argv);
int ctl_check_config_main(int argc, char **argv);
/* The follow-up report (report.c). */
int ctl_report_main(int argc, char **argv);
