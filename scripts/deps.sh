#!/usr/bin/env bash
# Installs the Debian packages named as arguments, but only those that are missing.
# Silent when everything is there. Needs root, or sudo.
set -euo pipefail

missing=()
for package in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

# nodesource's "nodejs" (which brings npm) satisfies the dependency too: accept
# any node and npm binaries on PATH.
for i in "${!missing[@]}"; do
  case ${missing[$i]} in
    nodejs) command -v node >/dev/null && unset 'missing[i]' ;;
    npm) command -v npm >/dev/null && unset 'missing[i]' ;;
  esac
done
missing=("${missing[@]}")
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "make deps: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "make deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
