# allvarsd — build, test, install.
#   make            build/allvarsd and build/allvarsctl
#   make SAN=1      the same under AddressSanitizer + UndefinedBehaviorSanitizer, in build-san/
#   make deps       install the Debian packages needed to build, test and run
#   make test       every test (the README's second command)
#   make demo       the main job on an embedded default (the README's first command)
#   make bench      the benchmark;  make faults  the fault-injection suite
#   make install    binaries, unit, man pages, example configuration (DESTDIR, PREFIX)
#   make deb        the Debian package, build/deb/allvarsd_<version>_<arch>.deb (deploy/debian/)

PREFIX     ?= /usr
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=

SAN ?= 0
OPT ?= 0
ifeq ($(SAN),1)
  BUILD ?= build-san
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(OPT),1)
  BUILD ?= build-opt
  SANFLAGS :=
else
  BUILD ?= build
  SANFLAGS :=
endif

CC      ?= cc
PKGS    := rdkafka libprotobuf-c libpq libsystemd libcrypto libmicrohttpd json-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifeq ($(OPT),1)
  OPTFLAGS := -O2 -g -DNDEBUG
else
  OPTFLAGS := -O1 -g
endif
CFLAGS  ?= $(OPTFLAGS)
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wno-missing-field-initializers -Wshadow \
           -Wstrict-prototypes -Wformat=2 -D_GNU_SOURCE $(SANFLAGS) \
           -I$(BUILD)/gen -Idaemon $(PKG_CFLAGS)
GEN_CFLAGS = $(filter-out -Werror -Wshadow -Wstrict-prototypes,$(CFLAGS))
LDFLAGS += $(SANFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

PROTOS      := $(wildcard proto/allvarssamtal/v1/*.proto)
PROTO_INC   := /usr/include
GEN_C       := $(BUILD)/gen/google/protobuf/timestamp.pb-c.c \
               $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H       := $(GEN_C:.c=.h)
GEN_O       := $(GEN_C:.c=.o)

# daemon/main.c is allvarsd, daemon/ctl/*.c is allvarsctl; every other daemon/*.c is the core library.
LIB_SRCS    := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
LIB_O       := $(patsubst daemon/%.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
CTL_O       := $(patsubst daemon/%.c,$(BUILD)/obj/%.o,$(wildcard daemon/ctl/*.c))
LIB         := $(BUILD)/liballvars.a

UNIT_TESTS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test-*.c))
INTEG_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(wildcard tests/integration/test-*.c))
TEST_HELPERS:= $(patsubst tests/lib/%.c,$(BUILD)/tests/lib/%.o,$(wildcard tests/lib/*.c))
TOOLS       := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(wildcard tests/tools/*.c))

.PHONY: all deps test test-unit demo bench bench-build faults fuzz install deb clean check-tools
.SECONDARY:

all: $(BUILD)/allvarsd $(BUILD)/allvarsctl

$(BUILD)/gen/google/protobuf/timestamp.pb-c.c $(BUILD)/gen/google/protobuf/timestamp.pb-c.h: $(PROTO_INC)/google/protobuf/timestamp.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=$(PROTO_INC) --c_out=$(BUILD)/gen google/protobuf/timestamp.proto

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --proto_path=$(PROTO_INC) --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.o: $(BUILD)/gen/%.pb-c.c $(GEN_H)
	$(CC) $(CPPFLAGS) $(GEN_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: daemon/%.c $(GEN_H) $(wildcard daemon/*.h daemon/ctl/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_O) $(GEN_O)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/allvarsd: $(BUILD)/obj/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/allvarsctl: $(CTL_O) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Tests only, never installed: allvarsd with ALLVARSD_TEST_HOOKS (SIGUSR2 stalls
# the main loop, for the watchdog test of tests/e2e/systemd-deb.bats).
$(BUILD)/obj/main-test-hooks.o: daemon/main.c $(GEN_H) $(wildcard daemon/*.h)
	@mkdir -p $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -DALLVARSD_TEST_HOOKS -c -o $@ $<

$(BUILD)/allvarsd-test-hooks: $(BUILD)/obj/main-test-hooks.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Tests: one binary per tests/{unit,integration}/test-*.c, on cmocka.
$(BUILD)/tests/lib/%.o: tests/lib/%.c $(GEN_H) $(wildcard tests/lib/*.h daemon/*.h)
	@mkdir -p $(BUILD)/tests/lib
	$(CC) $(CFLAGS) -Itests/lib -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(TEST_HELPERS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tests/%: tests/integration/%.c $(LIB) $(TEST_HELPERS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tests/%: tests/tools/%.c $(LIB) $(TEST_HELPERS)
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(BUILD)/bench
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

tests-build: all $(UNIT_TESTS) $(INTEG_TESTS) $(TOOLS) $(BUILD)/allvarsd-test-hooks

# Fuzz targets: clang + libFuzzer, always with ASan/UBSan.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BUILD := build-fuzz
fuzz:
	$(MAKE) CC=clang BUILD=$(FUZZ_BUILD) SAN=0 \
	  SANFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" $(FUZZ_BUILD)/liballvars.a
	@mkdir -p $(FUZZ_BUILD)/fuzz
	set -e; for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I$(FUZZ_BUILD)/gen -Idaemon $(PKG_CFLAGS) \
	    -o $(FUZZ_BUILD)/fuzz/$$n $$f $(FUZZ_BUILD)/liballvars.a $(PKG_LIBS) -lm; done

deps:
	tests/lib/deps.sh

test:
	tests/run

test-unit: tests-build
	tests/run unit

demo:
	examples/demo.sh

bench:
	bench/run

# What `make bench` runs, optimised. gcc -O2 warns about more than -O1 does
# (format truncation, for one), so every test run builds it too
# (tests/unit/build-opt.sh): a warning there would break `make bench` only.
bench-build:
	$(MAKE) OPT=1 all tests-build build-opt/bench/bench-rules build-opt/bench/consume-ceiling \
		build-opt/bench/latency-consumer

faults:
	tests/run faults

install: all
	install -Dm755 $(BUILD)/allvarsd $(DESTDIR)$(PREFIX)/sbin/allvarsd
	install -Dm755 $(BUILD)/allvarsctl $(DESTDIR)$(PREFIX)/bin/allvarsctl
	install -Dm644 deploy/allvarsd.service $(DESTDIR)$(UNITDIR)/allvarsd.service
	install -Dm644 deploy/allvarsd.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/allvarsd.conf
	install -Dm644 deploy/allvarsd.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/allvarsd.conf
	install -Dm644 deploy/allvarsd.conf.example $(DESTDIR)$(PREFIX)/share/doc/allvarsd/allvarsd.conf.example
	test -e $(DESTDIR)$(SYSCONFDIR)/allvarsd/allvarsd.conf || \
	  install -Dm640 deploy/allvarsd.conf.example $(DESTDIR)$(SYSCONFDIR)/allvarsd/allvarsd.conf
	install -Dm644 deploy/allvarsctl.conf.example $(DESTDIR)$(PREFIX)/share/doc/allvarsd/allvarsctl.conf.example
	test -e $(DESTDIR)$(SYSCONFDIR)/allvarsd/allvarsctl.conf || \
	  install -Dm644 deploy/allvarsctl.conf.example $(DESTDIR)$(SYSCONFDIR)/allvarsd/allvarsctl.conf
	install -d $(DESTDIR)$(PREFIX)/share/allvarsd/schemas
	install -m644 schemas/*.sql $(DESTDIR)$(PREFIX)/share/allvarsd/schemas/
	install -m644 deploy/roles.sql $(DESTDIR)$(PREFIX)/share/allvarsd/roles.sql
	install -Dm644 deploy/allvarsd.rules.yml $(DESTDIR)$(PREFIX)/share/allvarsd/prometheus/allvarsd.rules.yml
	install -Dm644 deploy/allvarsd.8 $(DESTDIR)$(MANDIR)/man8/allvarsd.8
	install -Dm644 deploy/allvarsctl.1 $(DESTDIR)$(MANDIR)/man1/allvarsctl.1
	install -Dm644 deploy/allvarsd.conf.5 $(DESTDIR)$(MANDIR)/man5/allvarsd.conf.5
	install -Dm644 deploy/allvarsd.catalog $(DESTDIR)$(PREFIX)/lib/systemd/catalog/allvarsd.catalog
	@echo "Now: systemd-sysusers allvarsd.conf; systemd-tmpfiles --create allvarsd.conf; systemctl daemon-reload"

# The Debian package: the sources and deploy/debian/ copied into a build tree
# (the checkout is never written to), then dpkg-buildpackage with debhelper.
DEB_TREE := build/deb
DEB_VERSION := $(shell dpkg-parsechangelog -l deploy/debian/changelog -S Version 2>/dev/null)
deb:
	@v=$$(sed -n 's/^#define ALLVARSD_VERSION "\(.*\)"/\1/p' daemon/version.h); \
	  test "$$v" = "$(DEB_VERSION)" || { echo "deploy/debian/changelog says $(DEB_VERSION), daemon/version.h $$v" >&2; exit 1; }
	rm -rf $(DEB_TREE)
	mkdir -p $(DEB_TREE)/allvarsd
	cp -a Makefile README.md daemon proto schemas deploy $(DEB_TREE)/allvarsd/
	cp -a deploy/debian $(DEB_TREE)/allvarsd/debian
	cd $(DEB_TREE)/allvarsd && DEB_BUILD_OPTIONS="parallel=$$(nproc) $(DEB_BUILD_OPTIONS)" dpkg-buildpackage -b -us -uc
	lintian --fail-on error,warning $(DEB_TREE)/allvarsd_$(DEB_VERSION)_*.deb
	@ls $(DEB_TREE)/allvarsd_$(DEB_VERSION)_*.deb

clean:
	rm -rf build build-san build-opt build-fuzz
