// The cert-manager release whose CRDs the control-plane tests install, to check the Certificates
// the operator renders with spec.tls.issuerRef against the real schema. Nothing is built from it:
// crds.sh downloads the module and prints its deploy/crds directory.
module agentobs.io/tools/cert-manager

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
