/* mock-kafka: librdkafka's mock cluster as a process, for tests that run the
 * daemon as a process and break Kafka on purpose.
 *
 *   mock-kafka [-b BROKERS] [-p PARTITIONS] [TOPIC...]
 *
 * Prints "BOOTSTRAP=host:port,..." on stdout, then reads commands on stdin,
 * one per line, and answers "OK" or "ERR ...":
 *   down BROKER | up BROKER | rtt BROKER MS
 *   error APIKEY COUNT ERRCODE    (push COUNT errors for requests of APIKEY)
 *   topic NAME PARTITIONS
 *   quit                          (or end of input)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

int main(int argc, char **argv) {
        int brokers = 1, partitions = 4, o;
        while ((o = getopt(argc, argv, "b:p:")) >= 0) {
                if (o == 'b')
                        brokers = atoi(optarg);
                else if (o == 'p')
                        partitions = atoi(optarg);
                else
                        return 64;
        }
        char e[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "log_level", "3", e, sizeof e);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
        if (!rk) {
                fprintf(stderr, "mock-kafka: %s\n", e);
                return 1;
        }
        rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
        if (!mc) {
                fprintf(stderr, "mock-kafka: cannot create the cluster\n");
                return 1;
        }
        for (int i = optind; i < argc; i++)
                rd_kafka_mock_topic_create(mc, argv[i], partitions, 1);
        printf("BOOTSTRAP=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
        fflush(stdout);

        char line[512];
        while (fgets(line, sizeof line, stdin)) {
                char cmd[32] = "", name[256] = "";
                int a = 0, b = 0, c = 0;
                rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
                if (sscanf(line, "%31s", cmd) != 1)
                        continue;
                if (strcmp(cmd, "quit") == 0)
                        break;
                else if (strcmp(cmd, "down") == 0 && sscanf(line, "%*s %d", &a) == 1)
                        err = rd_kafka_mock_broker_set_down(mc, a);
                else if (strcmp(cmd, "up") == 0 && sscanf(line, "%*s %d", &a) == 1)
                        err = rd_kafka_mock_broker_set_up(mc, a);
                else if (strcmp(cmd, "rtt") == 0 && sscanf(line, "%*s %d %d", &a, &b) == 2)
                        err = rd_kafka_mock_broker_set_rtt(mc, a, b);
                else if (strcmp(cmd, "error") == 0 && sscanf(line, "%*s %d %d %d", &a, &b, &c) == 3) {
                        rd_kafka_resp_err_t *errs = calloc((size_t)b, sizeof *errs);
                        for (int i = 0; i < b; i++)
                                errs[i] = (rd_kafka_resp_err_t)c;
                        rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)b, errs);
                        free(errs);
                } else if (strcmp(cmd, "topic") == 0 && sscanf(line, "%*s %255s %d", name, &a) == 2)
                        err = rd_kafka_mock_topic_create(mc, name, a, 1);
                else {
                        printf("ERR unknown command\n");
                        fflush(stdout);
                        continue;
                }
                if (err)
                        printf("ERR %s\n", rd_kafka_err2str(err));
                else
                        printf("OK\n");
                fflush(stdout);
        }
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(rk);
        return 0;
}
