package auth

import (
	"strings"
	"testing"
	"time"
)

// FuzzCookies: the visitor id and binding cookies are bytes a browser (or
// anyone) sends; whatever they hold, the gateway answers an id or an error
// without a panic, and what it accepts has its own form. (Forgeries are
// TestVisitorIDsAreSigned's and TestBindingIsOpaqueAndSealed's.)
func FuzzCookies(f *testing.F) {
	k := NewKeys("fuzz-secret-0123456789")
	_, visitor := k.MintVisitor()
	binding, _ := k.Seal(Binding{AllocID: "a", Claim: "c", Visitor: "v", Expires: 1 << 40})
	for _, s := range []string{"", ".", visitor, binding, strings.Repeat("A", maxBinding), strings.Repeat("A", maxBinding+1),
		strings.Repeat("A", idLen) + "." + strings.Repeat("A", idLen), "\x00", "%%%%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, ok := k.Visitor(s); ok && (len(id) != idLen || len(s) != 2*idLen+1) {
			t.Fatalf("accepted a visitor cookie of another form: %q (%q)", s, id)
		}
		if b, err := k.Open(s, time.Unix(0, 0)); err == nil && (len(s) > maxBinding || b.Expires <= 0) {
			t.Fatalf("opened a binding of another form: %q (%+v)", s, b)
		}
	})
}
