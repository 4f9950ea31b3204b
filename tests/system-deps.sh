#!/usr/bin/env bash
# System packages the test suite needs that pip cannot provide: PostgreSQL 15 server binaries
# (tests start a real server as an unprivileged user), and Debian's Chromium with its
# WebDriver (the review site's pages are tested in a real headless browser), Prometheus with
# promtool and Alertmanager (the generated alert rules are checked with promtool, and the
# alert → serve → notification flow runs end to end through both servers). Installed with apt
# when missing and we are root; otherwise we say exactly what to install.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need+=(postgresql-15)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v promtool >/dev/null || need+=(prometheus)  # promtool; the alert flow's Prometheus
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages for the tests: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "error: the tests need these system packages: ${need[*]}" >&2
  echo "       install them (e.g. sudo apt-get install ${need[*]}) and run make test again" >&2
  exit 2
fi
