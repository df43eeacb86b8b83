/* notify-listen PATH: bind a unix datagram socket at PATH (for NOTIFY_SOCKET)
 * and print every datagram received, newlines kept, followed by a line "--".
 * Runs until SIGTERM/SIGINT. Used to check allvarsd's sd_notify messages. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: notify-listen PATH\n");
                return 64;
        }
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (fd < 0 || strlen(argv[1]) >= sizeof sa.sun_path) {
                perror("notify-listen");
                return 1;
        }
        strcpy(sa.sun_path, argv[1]);
        unlink(argv[1]);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                perror("notify-listen: bind");
                return 1;
        }
        signal(SIGTERM, SIG_DFL);
        char buf[4096];
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
                if (n < 0)
                        continue;
                buf[n] = 0;
                printf("%s\n--\n", buf);
                fflush(stdout);
        }
}
