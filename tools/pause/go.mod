// The pod sandbox's process for the real node tier (scripts/build-kube.sh): no image registry is
// reachable here, so the pause image is built locally around this binary.
module tessera.local/tools/pause

go 1.26.0
