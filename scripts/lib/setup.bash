# Set-up shared by scripts/test and scripts/example (sourced; the caller has cd'd to the
# checkout and set `root`): packages, .venv, containers.conf, the local images.
# shellcheck shell=bash
BASE_IMAGE=${BINDIMG_TEST_BASE_IMAGE:-localhost/bindimg-test-base:latest}
REGISTRY_IMAGE=${BINDIMG_TEST_REGISTRY_IMAGE:-localhost/bindimg-test-registry:latest}
PY39_IMAGE=${BINDIMG_TEST_PY39_IMAGE:-localhost/bindimg-test-py39:latest}
export BINDIMG_TEST_BASE_IMAGE=$BASE_IMAGE BINDIMG_TEST_REGISTRY_IMAGE=$REGISTRY_IMAGE
export BINDIMG_TEST_PY39_IMAGE=$PY39_IMAGE
python=${BINDIMG_TEST_PYTHON:-python3}
env_dir=$root/.cache/test-env
pidfile=$env_dir/podman-service.pid
service_pid=

step_start=$SECONDS
step() {
    echo "==> [$((SECONDS - step_start))s] $*" >&2
}

# "pid/starttime" of a live process: tells it from a later process with a reused pid.
proc_identity() {
    local stat rest fields
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -r -a fields <<<"$rest"
    echo "$1/${fields[19]}"
}

install_packages() {
    local missing=() pkg
    for pkg in podman skopeo runc docker-registry mmdebstrap rpm; do
        if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ! command -v "$python" >/dev/null; then
        missing+=(python3 python3-venv)
    elif ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        missing+=(python3-venv) # Debian's python3 has no venv/ensurepip without it
    fi
    ((${#missing[@]})) || return 0
    step "apt-get install ${missing[*]}"
    if ((EUID != 0)); then
        echo "scripts/test: packages missing: ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {
    if ! { [[ -x .venv/bin/python ]] &&
        .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; }; then
        step "creating .venv with $python"
        rm -rf .venv
        "$python" -m venv .venv
    fi
    local stamp here
    stamp=$({ cat pyproject.toml; echo "$root"; .venv/bin/python -VV; } | sha256sum | cut -c1-64)
    # the editable install must be of this checkout, with the test tools
    here=$(.venv/bin/python -I -c \
        'import bindimg, pytest, testcontainers, ruff, mypy; print(bindimg.__file__)' 2>/dev/null || true)
    if [[ $(cat .venv/.bindimg-test-stamp 2>/dev/null) != "$stamp" || $here != "$root/bindimg/__init__.py" ]]; then
        step "pip install -e '.[test]'"
        rm -f .venv/.bindimg-test-stamp
        .venv/bin/python -m pip install --quiet -e '.[test]'
        echo "$stamp" >.venv/.bindimg-test-stamp
    fi
}

write_containers_conf() {
    cat >"$env_dir/containers.conf" <<'EOF'
# Written by scripts/test: what podman needs on the test machines (crun fails there with
# cgroups in hybrid mode; raising RLIMIT_NOFILE/NPROC is not permitted).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF=$env_dir/containers.conf
}

ensure_base_image() {
    podman image exists "$BASE_IMAGE" && return 0
    if [[ $BASE_IMAGE != localhost/* ]]; then
        step "pulling $BASE_IMAGE"
        podman pull "$BASE_IMAGE"
        return 0
    fi
    step "building $BASE_IMAGE (mmdebstrap bookworm, about 30 s)"
    local tarball=$env_dir/base.tar
    rm -f "$tarball"
    mmdebstrap --quiet --variant=apt --include=python3,skopeo,ca-certificates bookworm "$tarball"
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$BASE_IMAGE" >/dev/null
    rm -f "$tarball"
}

# Debian 11: Python 3.9.2 (the oldest bindimg supports) with its pytest, for the 3.9 tests.
ensure_py39_image() {
    podman image exists "$PY39_IMAGE" && return 0
    step "building $PY39_IMAGE (mmdebstrap bullseye, about 25 s)"
    local tarball=$env_dir/py39.tar
    rm -f "$tarball"
    mmdebstrap --quiet --variant=apt --include=python3,python3-pytest,skopeo bullseye "$tarball"
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$PY39_IMAGE" >/dev/null
    rm -f "$tarball"
}

ensure_registry_image() {
    if [[ $REGISTRY_IMAGE != localhost/* ]]; then
        if ! podman image exists "$REGISTRY_IMAGE"; then
            step "pulling $REGISTRY_IMAGE"
            podman pull "$REGISTRY_IMAGE"
        fi
        return 0
    fi
    local ctx=$env_dir/registry-image recipe
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp /usr/bin/docker-registry "$ctx/docker-registry"
    cat >"$ctx/config.yml" <<'EOF'
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: 0.0.0.0:5000
EOF
    cat >"$ctx/Containerfile" <<EOF
FROM $BASE_IMAGE
COPY docker-registry /usr/bin/docker-registry
COPY config.yml /etc/docker/registry/config.yml
EXPOSE 5000
ENTRYPOINT ["/usr/bin/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
EOF
    # Built when missing, or when its recipe (these files, the base image) changed.
    recipe=$({ cat "$ctx/Containerfile" "$ctx/config.yml" "$ctx/docker-registry"
        podman image inspect --format '{{.Id}}' "$BASE_IMAGE"; } | sha256sum | cut -c1-32)
    if ! podman image exists "$REGISTRY_IMAGE" ||
        [[ $(podman image inspect --format '{{index .Labels "org.bindimg.test.recipe"}}' \
            "$REGISTRY_IMAGE") != "$recipe" ]]; then
        step "building $REGISTRY_IMAGE"
        podman build --quiet --pull=never --label "org.bindimg.test.recipe=$recipe" \
            -t "$REGISTRY_IMAGE" -f "$ctx/Containerfile" "$ctx" >/dev/null
    fi
    rm -rf "$ctx"
}

# What both scripts need before anything runs: packages, .venv, podman's settings, the base
# and registry images (each step does nothing when already done).
# The generator binary of one podman series, downloaded once into .cache/quadlet/SUITE.
# A private apt configuration (sources, pins, lists, cache under .cache/quadlet/apt) keeps the
# machine's apt untouched; the pins (priority 40) would keep even a shared one from upgrading
# anything. dpkg-deb extracts only the generator; the package is never installed.
quadlet_apt=(
    -o "Dir::Etc::SourceList=$root/.cache/quadlet/apt/sources.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::Etc::Preferences=$root/.cache/quadlet/apt/preferences"
    -o Dir::Etc::PreferencesParts=/dev/null
    -o "Dir::State::Lists=$root/.cache/quadlet/apt/lists"
    -o "Dir::Cache=$root/.cache/quadlet/apt/cache"
    -o APT::Sandbox::User=root
)
quadlet_apt_updated=

ensure_quadlet() {
    local var=$1 suite=$2 series=$3 dir=$root/.cache/quadlet/$2 bin version deb
    bin=${!var:-$dir/quadlet}
    if [[ -z ${!var:-} && ! -x $bin ]]; then
        step "downloading podman's Quadlet generator from Debian $suite"
        if [[ -z $quadlet_apt_updated ]]; then
            mkdir -p "$root/.cache/quadlet/apt/lists/partial" "$root/.cache/quadlet/apt/cache/archives/partial"
            printf 'deb http://deb.debian.org/debian %s main\n' trixie sid >"$root/.cache/quadlet/apt/sources.list"
            printf 'Package: *\nPin: release n=%s\nPin-Priority: 40\n\n' trixie sid >"$root/.cache/quadlet/apt/preferences"
            apt-get "${quadlet_apt[@]}" update -qq
            quadlet_apt_updated=1
        fi
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        if ! (cd "$dir.tmp" && apt-get "${quadlet_apt[@]}" download -qq "podman/$suite" >/dev/null); then
            echo "scripts/test: Debian's archive has no podman in $suite any more; set $var to a podman $series.x quadlet binary" >&2
            exit 1
        fi
        deb=$(echo "$dir.tmp"/podman_*.deb)
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir.tmp" ./usr/libexec/podman/quadlet
        mv "$dir.tmp/usr/libexec/podman/quadlet" "$dir.tmp/quadlet"
        rm -rf "$dir.tmp/usr" "$deb"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    version=$("$bin" -version 2>/dev/null || true)
    if [[ $version != "$series".* ]]; then
        echo "scripts/test: $bin is podman '$version', not $series.x (Debian $suite moved on?); set $var to a podman $series.x quadlet binary" >&2
        exit 1
    fi
    export "$var=$bin"
}

prepare() {
    install_packages
    ensure_venv
    write_containers_conf
    ensure_base_image
    ensure_registry_image
}
