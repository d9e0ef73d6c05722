#!/usr/bin/env bash
# Fetches the Apache ZooKeeper server (jars from Maven Central, through Maven as this machine
# configures it) into the cache, and prints the directory of jars. A second run returns at once.
set -euo pipefail
ZOOKEEPER_VERSION="${ZOOKEEPER_VERSION:-3.9.5}"
CACHE_ROOT="${SHARDRING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shardring}"
DIR="$CACHE_ROOT/zookeeper-$ZOOKEEPER_VERSION"
if [[ -f "$DIR/lib/zookeeper-$ZOOKEEPER_VERSION.jar" ]]; then echo "$DIR/lib"; exit 0; fi
command -v mvn >/dev/null || { echo "zookeeper.sh: Maven (mvn) is required" >&2; exit 1; }
command -v java >/dev/null || { echo "zookeeper.sh: Java 17 is required" >&2; exit 1; }
mkdir -p "$DIR"
cp "$(dirname "$0")/zookeeper/pom.xml" "$DIR/pom.xml"
sed -i "s|<version>3.9.5</version><!-- zookeeper -->|<version>$ZOOKEEPER_VERSION</version>|" "$DIR/pom.xml"
(cd "$DIR" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$DIR/lib.tmp" >&2)
rm -rf "$DIR/lib" && mv "$DIR/lib.tmp" "$DIR/lib"
echo "$DIR/lib"
