# A real systemd (Debian 12's systemd 252) as PID 1 of a private namespace, for
# tests that run the shipped unit the way operators do (bash; source it).
#
#   sd_boot DIR              boot; DIR (empty, on the host) keeps the console log
#   sd_path PATH             the host's path of PATH inside (writes go to the overlay)
#   sd_run CMD...            run CMD inside (all of systemd's namespaces, its root)
#   sd_systemctl ARGS...     sd_run systemctl --no-pager ARGS...
#   sd_journal ARGS...       journalctl --root of the namespace, from the host
#   sd_wait SECS CMD...      run CMD (on the host) every 0.2 s until it succeeds, bounded
#   sd_poweroff              power off, bounded; SIGKILL the namespace if it hangs;
#                            remove the cgroups; safe to call twice
#
# How (tests/README.md "A real systemd" says why each step is needed):
#  - unshare --pid --fork --kill-child --mount --uts --ipc --cgroup, not --net:
#    units inside reach the PostgreSQL and Kafka of tests/lib on the host's loopback;
#  - an overlay of / with a tmpfs upper layer inside the namespace, so the host's
#    files are never changed and everything written inside is gone at power-off;
#  - a cgroup of our own on the host's cgroup2 hierarchy, with a fresh cgroup2
#    mounted inside, so systemd runs in pure cgroup v2 mode below it;
#  - fresh proc, sysfs, a minimal /dev, tmpfs /run and /tmp; the units the host
#    has enabled in /etc/systemd/system (postgresql, getty, timers, ...) masked;
#  - mount --make-rshared / before exec'ing systemd (credentials need it).
# Nothing is left behind: the namespace dies with its PID 1, the mounts with the
# namespace, and sd_poweroff removes the cgroups. Needs root.

# Kept when sourced again (bats loads the file in every test; setup_file exports them).
SD_PID=${SD_PID:-}
SD_UNSHARE_PID=${SD_UNSHARE_PID:-}
SD_CGROUP=${SD_CGROUP:-}
SD_DIR=${SD_DIR:-}

_sd_log() { printf 'systemd harness: %s\n' "$*" >&2; }

sd_wait() {
        local limit=$1 deadline
        shift
        deadline=$((SECONDS + limit))
        while ((SECONDS < deadline)); do
                if "$@" >/dev/null 2>&1; then return 0; fi
                sleep 0.2
        done
        "$@" >/dev/null 2>&1 && return 0
        _sd_log "timed out after ${limit}s waiting for: $*"
        return 1
}

# The cgroup2 hierarchy the launching shell can make a child in: the host's
# unified tree in hybrid mode, /sys/fs/cgroup itself on a pure v2 host.
_sd_cgroup_base() {
        if [[ $(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null) == cgroup2fs ]]; then
                echo /sys/fs/cgroup/unified
        elif [[ $(stat -fc %T /sys/fs/cgroup 2>/dev/null) == cgroup2fs ]]; then
                local own
                own=$(sed -n 's/^0:://p' /proc/self/cgroup)
                echo "/sys/fs/cgroup${own%/}"
        else
                return 1
        fi
}

# The script PID 1 of the namespace runs before it becomes systemd. $1: the
# host directory for the tmpfs that holds the overlay's layers.
_sd_init_script() {
        cat <<'EOF'
set -eu
M=$1
mount --make-rprivate /
mount -t tmpfs -o mode=0755 allvars-sd "$M"
mkdir "$M/upper" "$M/work" "$M/root"
mount -t overlay allvars-sd -o "lowerdir=/,upperdir=$M/upper,workdir=$M/work" "$M/root"
R=$M/root
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 666 "$R/dev/tty" c 5 0
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
# Mask what the host enabled: its PostgreSQL, gettys, timers, time sync.
for w in "$R"/etc/systemd/system/*.wants/*; do
        [ -e "$w" ] || [ -L "$w" ] || continue
        ln -sfn /dev/null "$R/etc/systemd/system/${w##*/}"
done
hostname allvars-sd
cd "$R"
mount --move . /
exec chroot . /bin/sh -c 'mount --make-rshared / && exec env -i container=allvars-sd /lib/systemd/systemd --system --unit=multi-user.target'
EOF
}

sd_boot() {
        local dir=$1
        [[ $EUID -eq 0 ]] || { _sd_log "needs root"; return 1; }
        [[ -x /lib/systemd/systemd ]] || { _sd_log "no /lib/systemd/systemd (Debian package systemd)"; return 1; }
        local base
        base=$(_sd_cgroup_base) || { _sd_log "no cgroup2 hierarchy"; return 1; }
        SD_DIR=$dir
        mkdir -p "$SD_DIR/mnt"
        _sd_init_script > "$SD_DIR/init.sh"
        SD_CGROUP=$base/allvars-sd-$$-$RANDOM
        mkdir "$SD_CGROUP" || return 1
        # A subshell moves itself into the cgroup and becomes unshare; its
        # child is PID 1 of the namespace.
        (
                echo "$BASHPID" > "$SD_CGROUP/cgroup.procs"
                exec unshare --pid --fork --kill-child --mount --uts --ipc --cgroup \
                        /bin/sh "$SD_DIR/init.sh" "$SD_DIR/mnt"
        ) < /dev/null > "$SD_DIR/console.log" 2>&1 3>&- &
        SD_UNSHARE_PID=$!
        local i
        for ((i = 0; i < 50; i++)); do
                SD_PID=$(cat "/proc/$SD_UNSHARE_PID/task/$SD_UNSHARE_PID/children" 2>/dev/null | awk '{ print $1 }')
                [[ -n $SD_PID ]] && break
                sleep 0.1
        done
        if [[ -z $SD_PID ]]; then
                _sd_log "unshare did not start"; cat "$SD_DIR/console.log" >&2; sd_poweroff; return 1
        fi
        # Booted when systemd answers and multi-user.target is reached.
        if ! sd_wait 60 _sd_booted; then
                _sd_log "systemd did not boot; console:"; tail -30 "$SD_DIR/console.log" >&2
                sd_poweroff
                return 1
        fi
}

_sd_booted() {
        [[ $(readlink "/proc/$SD_PID/exe" 2>/dev/null) == */systemd ]] || return 1
        local s
        s=$(sd_run systemctl is-system-running 2>/dev/null) || true
        [[ $s == running || $s == degraded ]]
}

sd_path() { echo "/proc/$SD_PID/root$1"; }

sd_run() { nsenter -t "$SD_PID" -a -- "$@"; }

sd_systemctl() { sd_run systemctl --no-pager "$@"; }

sd_journal() { journalctl --root="/proc/$SD_PID/root" --no-pager "$@"; }

sd_poweroff() {
        if [[ -n $SD_UNSHARE_PID ]]; then
                if [[ -n $SD_PID ]] && kill -0 "$SD_PID" 2>/dev/null; then
                        kill -s SIGRTMIN+4 "$SD_PID" 2>/dev/null || true
                        if ! sd_wait 30 _sd_gone; then
                                _sd_log "systemd did not power off within 30 s: SIGKILL"
                                kill -KILL "$SD_PID" 2>/dev/null || true
                        fi
                fi
                kill -KILL "$SD_UNSHARE_PID" 2>/dev/null || true
                wait "$SD_UNSHARE_PID" 2>/dev/null || true
                SD_UNSHARE_PID=
        fi
        SD_PID=
        if [[ -n $SD_CGROUP && -d $SD_CGROUP ]]; then
                # Empty once the kernel has reaped the namespace; then depth first.
                sd_wait 10 _sd_cgroup_empty || _sd_log "processes left in $SD_CGROUP: $(_sd_cgroup_pids)"
                find "$SD_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || true
                [[ -d $SD_CGROUP ]] && { _sd_log "cannot remove $SD_CGROUP"; return 1; }
        fi
        SD_CGROUP=
        return 0
}

_sd_gone() { ! kill -0 "$SD_UNSHARE_PID" 2>/dev/null; }
_sd_cgroup_pids() { find "$SD_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' '; }
_sd_cgroup_empty() { [[ -z $(_sd_cgroup_pids | tr -d ' ') ]]; }
