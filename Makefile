# Strata: `make demo` to try it, `make test` to prove it. Both install what is missing first.

VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# What the platform needs from the OS: Docker engines, busybox for the offline sample images, QEMU for VM
# nodes (and debootstrap, e2fsprogs, cpio to build their guest image), libvirt's QEMU driver and what builds its
# Python binding, an SSH client and tmux for the end-to-end tests, wrk and nginx for the benchmarks' baselines,
# a registry (Distribution's) and htpasswd for the tests of pulls, HAProxy (the front door), and an ACME server
# (pebble), curl, openssl and a headless browser (chromium; NSS's certutil to trust a CA) for the tests of HTTPS,
# psql for the tests of managed PostgreSQL (whose image debootstrap builds), and the PostgreSQL 15 server that the
# tests start as the control plane's second database (`tests/postgres.py`).
DEB_PACKAGES := docker.io busybox-static openssh-client qemu-system-x86 qemu-utils debootstrap e2fsprogs cpio \
	libvirt-daemon libvirt-dev pkg-config gcc tmux wrk nginx-light docker-registry apache2-utils \
	haproxy pebble curl openssl chromium libnss3-tools postgresql-client postgresql-15

.PHONY: install system-packages demo test test-vm lint clean

install: system-packages $(VENV)/.installed

system-packages:
	@# postgresql-15's postinst makes a `main` cluster and starts its server unless postgresql-common's
	@# createcluster.conf says not to. The tests run a server of their own (as nobody, in a temporary directory), and
	@# `make install` must leave nothing running: so postgresql-common, which writes that file, is installed first and
	@# told to make no cluster (as PostgreSQL's official image does). Existing clusters are left alone.
	@if ! dpkg -s postgresql-15 >/dev/null 2>&1; then \
		{ dpkg -s postgresql-common >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$(SUDO) apt-get install -y -qq --no-install-recommends postgresql-common; }; } && \
		echo 'create_main_cluster = false' | $(SUDO) tee -a /etc/postgresql-common/createcluster.conf >/dev/null; \
	fi
	@# OpenSSH's server, for the remote hosts the tests make (each runs one of its own, in a network namespace). Its
	@# postinst enables and starts the host's sshd: one installed here is disabled and stopped again; an sshd the host
	@# had already is left as it is.
	@if ! dpkg -s openssh-server >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$(SUDO) apt-get install -y -qq --no-install-recommends openssh-server && \
		{ ! command -v systemctl >/dev/null || $(SUDO) systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 \
			|| true; }; \
	fi
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# libvirt's QEMU driver will not start without the user it runs QEMU as (libvirt-daemon-system makes it,
	@# with systemd and a network stack this platform does not use); the tests' libvirtd runs QEMU as root.
	@getent passwd libvirt-qemu >/dev/null || $(SUDO) useradd --system --user-group --no-create-home \
		--home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	.ci/with-dockerd .ci/demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy strata tenants hosting gateway tui
	.ci/with-dockerd $(BIN)/pytest

test-vm: install
	STRATA_VM_TESTS=1 .ci/with-dockerd $(BIN)/pytest tests/iaas

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy strata tenants hosting gateway tui

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache
