package display

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
)

// familyWild matches any host; with an empty display number the entry matches
// any display, which is what we need because -displayfd picks the number only
// after the file must already exist.
const familyWild = 0xFFFF

// writeAuthority writes an X authority file with one fresh MIT-MAGIC-COOKIE-1,
// so only processes that can read the file (the task user) can open the
// display, even through the abstract socket namespace shared by the host.
func writeAuthority(path string) error {
	cookie := make([]byte, 16)
	if _, err := rand.Read(cookie); err != nil {
		return fmt.Errorf("generate X cookie: %w", err)
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, uint16(familyWild))
	for _, field := range [][]byte{nil, nil, []byte("MIT-MAGIC-COOKIE-1"), cookie} {
		_ = binary.Write(&b, binary.BigEndian, uint16(len(field)))
		b.Write(field)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write X authority %s: %w", path, err)
	}
	return nil
}
