package gpu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ldCacheMagic starts the current ld.so.cache format (glibc >= 2.2; the only
// format glibc >= 2.32 writes). Older files carry the legacy "ld.so-1.7.0"
// table first and this one after it, so the parser looks for the magic.
const ldCacheMagic = "glibc-ld.so.cache1.1"

// ld.so.cache layout (glibc elf/cache.c, struct cache_file_new): magic and
// version (20 bytes), nlibs, len_strings, flags+padding, extension offset,
// 3 unused words = 48 bytes; then nlibs entries of {int32 flags; uint32 key;
// uint32 value; uint32 osversion; uint64 hwcap} = 24 bytes. key and value are
// offsets of NUL-terminated strings from the start of the new-format header.
const (
	ldCacheHeaderLen = 48
	ldCacheEntryLen  = 24
	// ldCacheFlagX8664 is FLAG_ELF_LIBC6|FLAG_X8664_LIB64 (0x0303); entries
	// for other ABIs (i386, x32) must not count as loadable for a 64-bit app.
	ldCacheFlagX8664 = 0x0303
)

// parseLDCache returns soname -> path for the x86-64 entries of an
// ld.so.cache file. The first entry for a name wins, as in ld.so.
func parseLDCache(data []byte) (map[string]string, error) {
	base := bytes.Index(data, []byte(ldCacheMagic))
	if base < 0 {
		return nil, errors.New("no " + ldCacheMagic + " header")
	}
	if len(data) < base+ldCacheHeaderLen {
		return nil, errors.New("truncated header")
	}
	le := binary.LittleEndian
	nlibs := int(le.Uint32(data[base+20:]))
	if nlibs < 0 || base+ldCacheHeaderLen+nlibs*ldCacheEntryLen > len(data) {
		return nil, fmt.Errorf("header says %d entries, file too short", nlibs)
	}
	str := func(off uint32) (string, bool) {
		start := base + int(off)
		if start < 0 || start >= len(data) {
			return "", false
		}
		end := bytes.IndexByte(data[start:], 0)
		if end < 0 {
			return "", false
		}
		return string(data[start : start+end]), true
	}
	libs := make(map[string]string, nlibs)
	for i := 0; i < nlibs; i++ {
		e := data[base+ldCacheHeaderLen+i*ldCacheEntryLen:]
		flags := le.Uint32(e[0:])
		if flags&0xffff != ldCacheFlagX8664 {
			continue
		}
		k, ok1 := str(le.Uint32(e[4:]))
		v, ok2 := str(le.Uint32(e[8:]))
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("entry %d points outside the file", i)
		}
		if _, seen := libs[k]; !seen {
			libs[k] = v
		}
	}
	return libs, nil
}

// defaultLibDirs are the directories ld.so searches after the cache on
// x86-64 (its trusted dirs), plus Debian/Ubuntu's multiarch dirs that every
// distribution lists in ld.so.conf.
var defaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// findLibraries decides, without dlopen, where the dynamic linker would find
// each name: first ld.so.cache (what dlopen(name) consults), then the
// default directories. A cache entry whose file is gone does not count (a
// stale cache makes dlopen fail). Paths are node paths (without root).
func findLibraries(root string, names []string) (map[string]string, []string) {
	var warnings []string
	cache := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(root, "etc/ld.so.cache")); err == nil {
		c, err := parseLDCache(b)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("parse /etc/ld.so.cache: %v; falling back to the default library directories", err))
		} else {
			cache = c
		}
	} else if !os.IsNotExist(err) {
		warnings = append(warnings, fmt.Sprintf("read /etc/ld.so.cache: %v", err))
	}
	found := map[string]string{}
	for _, n := range names {
		if p, ok := cache[n]; ok && existsUnder(root, p) {
			found[n] = p
			continue
		}
		for _, d := range defaultLibDirs {
			p := path.Join(d, n)
			if existsUnder(root, p) {
				found[n] = p
				break
			}
		}
	}
	return found, warnings
}

// existsUnder reports whether the node path p exists under root, following
// symlinks the way the node would: absolute link targets are resolved
// against root, not against this machine's /.
func existsUnder(root, p string) bool {
	_, ok := resolveUnder(root, p)
	return ok
}

// resolveUnder follows symlinks of the node path p inside root and returns
// the final node path.
func resolveUnder(root, p string) (string, bool) {
	p = path.Clean("/" + p)
	for hops := 0; hops < 40; hops++ {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return "", false
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, true
		}
		t, err := os.Readlink(filepath.Join(root, p))
		if err != nil {
			return "", false
		}
		if !strings.HasPrefix(t, "/") {
			t = path.Join(path.Dir(p), t)
		}
		p = path.Clean(t)
	}
	return "", false
}
