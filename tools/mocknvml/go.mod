// Pins NVIDIA's mock NVML (github.com/NVIDIA/k8s-test-infra, pkg/gpu/mocknvml: a libnvidia-ml.so written in
// Go over go-nvml's C header, configured by YAML), the second fake of the GPU that Tessera's NVML layer and
// exporter are tested against (tests/tessera/test_nvml_on_nvidias_mock.py). scripts/build-mocknvml.sh copies
// this file and go.sum into a build folder, puts the module's source at ./src (the module proxy serves it
// where it may; else the commit from a git repository, TESSERA_MOCKNVML_SRC) and builds its bridge/ as a
// C shared library with the dependencies below, from the module proxy.
module tessera.local/tools/mocknvml

go 1.26.0

require (
	github.com/NVIDIA/go-nvml v0.13.3-1 // indirect
	github.com/NVIDIA/k8s-test-infra v0.0.0-20260821154203-3b2b865d91b1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	go.yaml.in/yaml/v2 v2.4.3 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)

replace github.com/NVIDIA/k8s-test-infra => ./src
