#!/usr/bin/env bash
# Builds the Lambda deployment package: the trailwatch-lambda binary as
# `bootstrap` (linux/arm64, for the provided.al2023 runtime) and bundle/
# (configuration and rules; TRAILWATCH_CONFIG=bundle/config.yaml).
#
#   examples/deploy/lambda/build.sh [OUT.zip]     (default: ./trailwatch-lambda.zip)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="$(realpath -m "${1:-trailwatch-lambda.zip}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
	cd "$root"
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -tags lambda.norpc -trimpath -ldflags "-s -w" \
		-o "$work/bootstrap" ./cmd/trailwatch-lambda
)
cp -R "$here/bundle" "$work/bundle"
rm -f "$out"
(cd "$work" && zip -qr "$out" bootstrap bundle)
echo "wrote $out"
