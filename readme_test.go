package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	gwconfig "github.com/pixelstream/nomad-driver-pixelstream/gateway/config"
)

// TestMain lets the README test run the binary's subcommands from this
// test binary: README_SUBCOMMAND=1 makes it main() with the arguments
// after "--".
func TestMain(m *testing.M) {
	if os.Getenv("README_SUBCOMMAND") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"nomad-driver-pixelstream"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// subcommandFlags runs `nomad-driver-pixelstream <sub> -h` and returns the
// flags its usage lists.
func subcommandFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--", sub, "-h")
	cmd.Env = append(os.Environ(), "README_SUBCOMMAND=1")
	out, _ := cmd.CombinedOutput() // -h exits 0 or 2 depending on the flag package's mode
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h lists no flags:\n%s", sub, out)
	}
	return flags
}

// readmeSection returns the README's lines from the heading that starts
// with heading up to the next heading of the same or a higher level (lines
// in fenced code blocks are not headings).
func readmeSection(t *testing.T, readme, heading string) string {
	t.Helper()
	level := strings.Index(heading, " ")
	var out []string
	in, fenced := false, false
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if !fenced && strings.HasPrefix(line, "#") {
			hashes := len(line) - len(strings.TrimLeft(line, "#"))
			if in && hashes <= level && strings.HasPrefix(line[hashes:], " ") {
				break
			}
			if strings.HasPrefix(line, heading) {
				in = true
			}
		}
		if in {
			out = append(out, line)
		}
	}
	if !in {
		t.Fatalf("README has no section %q", heading)
	}
	return strings.Join(out, "\n")
}

// tableFirstCells returns the first cell of every row of the Markdown
// table that follows the header line containing header.
func tableFirstCells(t *testing.T, text, header string) []string {
	t.Helper()
	i := strings.Index(text, header)
	if i < 0 {
		t.Fatalf("README has no table with header %q", header)
	}
	var cells []string
	sc := bufio.NewScanner(strings.NewReader(text[i:]))
	sc.Scan() // header
	sc.Scan() // |---|
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells = append(cells, strings.Split(line, "|")[1])
	}
	return cells
}

var backticked = regexp.MustCompile("`([^`]*)`")

// fieldNames turns a table cell such as "`turn { tls { cert_file key_file } }`"
// or "`stop_signal`, `stop_timeout`" into dotted field names.
func fieldNames(cell string) []string {
	var out []string
	for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
		var stack []string
		var last string
		for _, tok := range strings.Fields(strings.NewReplacer("{", " { ", "}", " } ").Replace(m[1])) {
			switch tok {
			case "{":
				stack = append(stack, last)
				// the block name itself is not a leaf
				out = out[:len(out)-1]
			case "}":
				stack = stack[:len(stack)-1]
			default:
				name := strings.Join(append(append([]string{}, stack...), tok), ".")
				out = append(out, name)
				last = tok
			}
		}
	}
	return out
}

// codecFields lists the dotted names of a config struct's fields by tag.
func codecFields(typ reflect.Type, tag, prefix string) []string {
	var out []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, codecFields(ft, tag, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

func sameSet(t *testing.T, what string, documented, real []string) {
	t.Helper()
	doc, code := map[string]bool{}, map[string]bool{}
	for _, d := range documented {
		doc[d] = true
	}
	for _, c := range real {
		code[c] = true
	}
	var missing, stale []string
	for c := range code {
		if !doc[c] {
			missing = append(missing, c)
		}
	}
	for d := range doc {
		if !code[d] {
			stale = append(stale, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(stale)
	if len(missing) > 0 {
		t.Errorf("%s: in the code but not in the README: %v", what, missing)
	}
	if len(stale) > 0 {
		t.Errorf("%s: in the README but not in the code: %v", what, stale)
	}
}

// TestREADMEMatchesCode: every flag, route and configuration field the
// README names exists, and every public one is in the README, so the
// README cannot drift from the binary a user builds.
func TestREADMEMatchesCode(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)

	t.Run("task configuration", func(t *testing.T) {
		var doc []string
		for _, cell := range tableFirstCells(t, readmeSection(t, readme, "### Task configuration"), "| field | default | meaning |") {
			doc = append(doc, fieldNames(cell)...)
		}
		sameSet(t, "task config fields", doc, codecFields(reflect.TypeOf(config.TaskConfig{}), "codec", ""))
	})

	t.Run("plugin configuration", func(t *testing.T) {
		var doc []string
		for _, cell := range tableFirstCells(t, readmeSection(t, readme, "### Plugin configuration"), "| field | default | meaning |") {
			doc = append(doc, fieldNames(cell)...)
		}
		sameSet(t, "plugin config fields", doc, codecFields(reflect.TypeOf(config.PluginConfig{}), "codec", ""))
	})

	gatewayRows := tableFirstCells(t, readmeSection(t, readme, "## The gateway: one URL for a fleet"), "| setting (HCL / flag) |")
	// A gateway row names HCL settings and flags: `min_free` / `-min-free`.
	gatewayDoc := func(flags bool) []string {
		var out []string
		for _, cell := range gatewayRows {
			for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
				isFlag := strings.HasPrefix(m[1], "-")
				switch {
				case isFlag && flags:
					out = append(out, strings.TrimPrefix(strings.Fields(m[1])[0], "-"))
				case !isFlag && !flags:
					out = append(out, fieldNames("`"+m[1]+"`")...)
				}
			}
		}
		return out
	}
	t.Run("gateway settings", func(t *testing.T) {
		sameSet(t, "gateway HCL settings", gatewayDoc(false), codecFields(reflect.TypeOf(gwconfig.Config{}), "hcl", ""))
	})

	flagRE := regexp.MustCompile(`(?:^|[\s\[(])--?([a-z][a-z0-9-]*)`)
	standalone := readmeSection(t, readme, "## Standalone components")
	commandFlags := func(sub string) []string {
		var out []string
		in := false
		for _, line := range strings.Split(standalone, "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "nomad-driver-pixelstream ") {
				in = strings.HasPrefix(trimmed, "nomad-driver-pixelstream "+sub+" ") || trimmed == "nomad-driver-pixelstream "+sub
				trimmed = strings.TrimPrefix(trimmed, "nomad-driver-pixelstream "+sub)
			}
			if !in {
				continue
			}
			for _, m := range flagRE.FindAllStringSubmatch(" "+trimmed, -1) {
				out = append(out, m[1])
			}
		}
		return out
	}
	for _, sub := range []string{"signalling", "turn"} {
		t.Run(sub+" flags", func(t *testing.T) {
			real := subcommandFlags(t, sub)
			var code []string
			for f := range real {
				code = append(code, f)
			}
			sameSet(t, sub+" flags", commandFlags(sub), code)
		})
	}
	t.Run("gateway flags", func(t *testing.T) {
		var code []string
		for f := range subcommandFlags(t, "gateway") {
			code = append(code, f)
		}
		sameSet(t, "gateway flags", append(gatewayDoc(true), commandFlags("gateway")...), code)
	})

	t.Run("player port routes", func(t *testing.T) {
		var doc []string
		for _, cell := range tableFirstCells(t, readmeSection(t, readme, "### HTTP endpoints on `http_port`"), "| path | |") {
			for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
				p := m[1]
				if base, ok := strings.CutSuffix(p, "[/id]"); ok {
					doc = append(doc, base, base+"/{id}")
					continue
				}
				doc = append(doc, p)
			}
		}
		var code []string
		for _, r := range playerhttp.Routes() {
			_, path, _ := strings.Cut(r, " ")
			if path == "" {
				path = r
			}
			code = append(code, path)
		}
		sameSet(t, "player port routes", doc, code)
	})
}

// TestREADMELayoutNamesEveryFolder: the Layout table names every top-level
// folder of the repository that git tracks.
func TestREADMELayoutNamesEveryFolder(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "ls-files").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	dirs := map[string]bool{}
	for _, f := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if d, _, ok := strings.Cut(string(f), "/"); ok {
			dirs[d+"/"] = true
		}
	}
	var doc []string
	for _, cell := range tableFirstCells(t, readmeSection(t, string(raw), "### Layout"), "| folder | |") {
		for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
			if strings.HasSuffix(m[1], "/") {
				doc = append(doc, m[1])
			}
		}
	}
	var code []string
	for d := range dirs {
		code = append(code, d)
	}
	sameSet(t, "top-level folders", doc, code)
}

// TestExampleGatewayConfigLoads: the sample gateway configuration the
// README points to is one the gateway accepts.
func TestExampleGatewayConfigLoads(t *testing.T) {
	t.Setenv("PIXELSTREAM_GATEWAY_SECRET", "readme-test-secret-0123456789")
	var stderr bytes.Buffer
	cfg, err := gwconfig.Load([]string{"-config", "example/gateway.hcl"}, &stderr)
	if err != nil {
		t.Fatalf("example/gateway.hcl: %v\n%s", err, stderr.String())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("example/gateway.hcl does not validate: %v", err)
	}
	if cfg.Listen != "0.0.0.0:8080" || cfg.DispatchMeta["fleet"] != "demo" {
		t.Fatalf("example/gateway.hcl read as %+v", cfg)
	}
}
