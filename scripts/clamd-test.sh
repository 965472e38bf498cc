#!/usr/bin/env bash
# Makes clamd available for the antivirus tests (internal/clamd,
# internal/mediaapi). The tests start their own clamd with a private
# configuration whose database holds only an EICAR signature, so no virus
# database is downloaded and no system clamd service is needed.
#
#   scripts/clamd-test.sh install   install Debian's clamav-daemon if clamd is missing
#   scripts/clamd-test.sh check     exit 1 unless clamd is installed
set -euo pipefail

have_clamd() { command -v clamd >/dev/null 2>&1 || [ -x /usr/sbin/clamd ]; }

case "${1:-install}" in
install)
	if have_clamd; then
		echo "clamd present: $( (command -v clamd || echo /usr/sbin/clamd) | head -1)"
		exit 0
	fi
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends clamav-daemon >/dev/null
	have_clamd || { echo "clamd still missing after installing clamav-daemon" >&2; exit 1; }
	echo "clamd installed"
	;;
check)
	have_clamd
	;;
*)
	echo "usage: $0 [install|check]" >&2
	exit 2
	;;
esac
