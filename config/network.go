package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// interpolation matches a ${...} reference.
var interpolation = regexp.MustCompile(`\$\{([^{}]*)\}`)

// ResolveNetwork fills ${NAME} references that Nomad left in the networking
// fields (turn.public_address, turn.public_port, tls files) from the task's
// environment. The client interpolates the task config before the driver
// sees it, but a reference it could not resolve stays as written; env is the
// full task environment (NOMAD_META_*, variables a template wrote with
// env = true), so a name it has is resolved here. A reference that stays
// unresolved is left for Validate to report with the field's name.
func (t *TaskConfig) ResolveNetwork(env map[string]string) {
	for _, f := range []*string{&t.TURN.PublicAddress, &t.TURN.PublicPort, &t.TLS.CertFile, &t.TLS.KeyFile} {
		*f = interpolate(*f, env)
	}
}

// interpolate replaces ${NAME} and ${env.NAME} with env[NAME] where env has it.
func interpolate(s string, env map[string]string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	return interpolation.ReplaceAllStringFunc(s, func(ref string) string {
		name := strings.TrimSpace(ref[2 : len(ref)-1])
		name = strings.TrimPrefix(name, "env.")
		if v, ok := env[name]; ok {
			return v
		}
		return ref
	})
}

// unresolvedHint explains a ${...} left in a field.
const unresolvedHint = "Nomad leaves a reference as written when the node has no such attribute or meta key (see `nomad node status -verbose`) and the task no such variable (NOMAD_META_*, or a template with env = true)"

// PublicPortNumber is turn.public_port parsed; 0 when unset. Validate has checked it.
func (t *TaskConfig) PublicPortNumber() int {
	n, err := strconv.Atoi(strings.TrimSpace(t.TURN.PublicPort))
	if err != nil {
		return 0
	}
	return n
}

// validateNetwork checks turn.public_address and turn.public_port after
// interpolation.
func (t *TaskConfig) validateNetwork() []error {
	var errs []error
	if a := t.TURN.PublicAddress; a != "" {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		switch {
		case strings.Contains(a, "${"):
			errs = append(errs, fmt.Errorf("turn.public_address: %q did not resolve to an IP address: %s", a, unresolvedHint))
		case err != nil || ip.Zone() != "":
			errs = append(errs, fmt.Errorf("turn.public_address: %q is not an IP address such as \"203.0.113.10\" (a host name is not accepted: browsers get it in TURN URLs and relay candidates)", a))
		case ip.IsUnspecified() || ip.IsMulticast():
			errs = append(errs, fmt.Errorf("turn.public_address: %q is not an address players can reach; give the node's public IP such as \"203.0.113.10\"", a))
		}
	}
	if p := t.TURN.PublicPort; p != "" {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		switch {
		case strings.Contains(p, "${"):
			errs = append(errs, fmt.Errorf("turn.public_port: %q did not resolve to a port number: %s", p, unresolvedHint))
		case err != nil || n < 1 || n > 65535:
			errs = append(errs, fmt.Errorf("turn.public_port: %q is not a port number from 1 to 65535 (the port players reach the TURN port at, e.g. 41000)", p))
		}
	}
	for field, f := range map[string]string{"tls.cert_file": t.TLS.CertFile, "tls.key_file": t.TLS.KeyFile} {
		if strings.Contains(f, "${") {
			errs = append(errs, fmt.Errorf("%s: %q did not resolve to a file name: %s", field, f, unresolvedHint))
		}
	}
	return errs
}
