#!/bin/bash
# Install the Debian 12 packages allvarsd needs to build, test and run (`make deps`).
# A no-op when they are all present; otherwise `apt-get update` and one install of
# the missing ones. Uses sudo when not root.
#
# Why each one is here:
#   build-essential pkg-config          the C toolchain, make, and pkg-config for the Makefile
#   librdkafka-dev                      Kafka client (and its mock cluster for tests)
#   libprotobuf-c-dev protobuf-c-compiler  the protobuf runtime and protoc-c code generator
#   protobuf-compiler libprotobuf-dev   protoc (--encode for the examples) and timestamp.proto
#   libpq-dev libsystemd-dev libssl-dev PostgreSQL client, sd_notify/journald, hashing (libcrypto)
#   libmicrohttpd-dev libjson-c-dev     the Prometheus endpoint's HTTP server; librdkafka's statistics (JSON)
#   prometheus curl                     promtool (check metrics/rules, the alert rules' unit tests) and the
#                                       Prometheus server the metrics test scrapes with; curl scrapes by hand
#   libcmocka-dev bats jq groff-base openssl
#                                       unit/integration tests in C, process-level tests in bash,
#                                       JSON checks of allvarsctl --json, man page checks,
#                                       the throwaway CA of the TLS tests
#   postgresql-15 postgresql-client-15  server binaries for the private test/demo cluster; psql
#   tzdata                              Europe/Stockholm for deadlines
#   kcat                                Kafka readiness checks and event printing in tests and demo
#   clang libclang-rt-14-dev            libFuzzer (clang -fsanitize=fuzzer) for the fuzz smoke
#   valgrind libc6-dbg                  the valgrind phase (libc6-dbg gives memcheck libc's symbols)
#   openjdk-17-jre-headless maven ca-certificates
#                                       the real Apache Kafka broker for end-to-end tests: Java 17
#                                       runs it, maven fetches its jars from Maven Central (HTTPS)
#   systemd                             systemd-analyze (unit checks), the runtime of the service, and
#                                       the systemd 252 the e2e tests boot in a namespace (tests/lib/systemd.bash)
#   debhelper dpkg-dev lintian apt      make deb (dpkg-buildpackage, dh compat 13 with dh_installsysusers)
#                                       and its lintian check; apt installs the package in tests/e2e/systemd-deb.bats
#   nodejs npm                          the contract checks (tests/contract): buf and the AsyncAPI
#                                       parser come from the npm registry, pinned by
#                                       tests/contract/package-lock.json; npm only when no npm is
#                                       there (NodeSource's nodejs ships its own)
#   procps iproute2 passwd util-linux coreutils
#                                       ps/pgrep, ss, useradd (test user when root), runuser, timeout
#   golang-go curl                      the fault suite's Toxiproxy (tests/lib/toxiproxy.bash): go builds
#                                       the pinned server from the Go module proxy, curl drives its API
#   faketime                            libfaketime: the fault suite's wall-clock steps (tests/faults/08-clock-step.sh)
#   chromium                            renders `allvarsctl report --format html` headless in the
#                                       report test (its SVG charts: bars and labels, a screenshot)
set -euo pipefail

PACKAGES=(
        build-essential pkg-config
        librdkafka-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
        libpq-dev libsystemd-dev libssl-dev libmicrohttpd-dev libjson-c-dev prometheus curl
        libcmocka-dev bats jq groff-base openssl
        postgresql-15 postgresql-client-15
        tzdata kcat
        clang libclang-rt-14-dev
        valgrind libc6-dbg
        openjdk-17-jre-headless maven ca-certificates
        systemd procps iproute2 passwd util-linux coreutils
        golang-go curl faketime
        debhelper dpkg-dev lintian apt
        nodejs
        chromium
)
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) != "ii " ]]; then
                missing+=("$p")
        fi
done

if ((${#missing[@]} == 0)); then
        echo "deps: all ${#PACKAGES[@]} packages present"
        exit 0
fi

if [[ -r /etc/os-release ]] && ! grep -q '^VERSION_ID="12"' /etc/os-release; then
        echo "deps: warning: written for Debian 12 (bookworm); this is $(. /etc/os-release; echo "$PRETTY_NAME")" >&2
fi

SUDO=()
if ((EUID != 0)); then
        if command -v sudo >/dev/null; then
                SUDO=(sudo)
        else
                echo "deps: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
                exit 1
        fi
fi

echo "deps: installing ${missing[*]}"
# postgresql-common may create and start a default cluster (15/main on 5432):
# harmless, the tests and the demo run clusters of their own on other ports.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${missing[@]}"
echo "deps: done"
