package driver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/audio"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/display"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/gpu"
	"github.com/pixelstream/nomad-driver-pixelstream/version"
)

// fingerprintPeriod is how often the node's capabilities are re-checked, so
// installing Xvfb on a running node makes it eligible without a restart.
const fingerprintPeriod = 30 * time.Second

// Fingerprint answers at once and then every fingerprintPeriod.
func (d *Driver) Fingerprint(ctx context.Context) (<-chan *drivers.Fingerprint, error) {
	ch := make(chan *drivers.Fingerprint)
	go func() {
		defer close(ch)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.ctx.Done():
				return
			case <-t.C:
				t.Reset(fingerprintPeriod)
				select {
				case ch <- d.buildFingerprint():
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

func (d *Driver) buildFingerprint() *drivers.Fingerprint {
	cfg := d.pluginConfig()
	attrs := map[string]*pstructs.Attribute{
		"driver.pixelstream.version": pstructs.NewStringAttribute(version.Version),
	}
	bin, err := exec.LookPath(cfg.XvfbPath)
	if err != nil {
		return &drivers.Fingerprint{
			Attributes: attrs,
			Health:     drivers.HealthStateUndetected,
			HealthDescription: fmt.Sprintf("Xvfb not found (xvfb_path = %q): install it (Debian/Ubuntu: apt-get install xvfb; RHEL: dnf install xorg-x11-server-Xvfb) or set xvfb_path in the plugin config",
				cfg.XvfbPath),
		}
	}
	attrs["driver.pixelstream.xvfb"] = pstructs.NewStringAttribute(bin)
	attrs["driver.pixelstream.xvfb.version"] = pstructs.NewStringAttribute(d.xvfbVersion(bin))
	attrs["driver.pixelstream.allow_root"] = pstructs.NewBoolAttribute(cfg.AllowRoot)
	node := d.detectNode()
	for k, v := range node.gpu.Attributes() {
		attrs[k] = typedAttribute(v)
	}
	attrs["driver.pixelstream.audio"] = pstructs.NewBoolAttribute(node.audio.Available)
	if node.audio.Available {
		attrs["driver.pixelstream.audio.pipewire.version"] = pstructs.NewStringAttribute(node.audio.PipeWireVersion)
	}
	return &drivers.Fingerprint{
		Attributes:        attrs,
		Health:            drivers.HealthStateHealthy,
		HealthDescription: drivers.DriverHealthy,
	}
}

// xvfbVersion asks the package manager once per binary path; it does not
// change while the plugin runs.
func (d *Driver) xvfbVersion(bin string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.xvfbVersions[bin]; ok {
		return v
	}
	v, err := display.Version(bin)
	if err != nil {
		v = "unknown"
	}
	d.xvfbVersions[bin] = v
	return v
}

// nodeInfo is what a fingerprint learns about the node's GPUs and audio.
type nodeInfo struct {
	gpu   gpu.Info
	audio audio.Info
}

// gpuDetectTimeout bounds nvidia-smi, which can hang on a wedged GPU.
const gpuDetectTimeout = 10 * time.Second

// detectNode probes GPUs and audio and remembers the result for StartTask.
func (d *Driver) detectNode() *nodeInfo {
	ctx, cancel := context.WithTimeout(d.ctx, gpuDetectTimeout)
	defer cancel()
	info, err := gpu.Detector{Root: "/", Run: gpu.Exec, Getenv: os.Getenv}.Detect(ctx)
	if err != nil {
		d.logger.Warn("GPU detection failed; the node is treated as having no GPU", "error", err)
	}
	n := &nodeInfo{gpu: info, audio: audio.Detect()}
	d.mu.Lock()
	d.node = n
	d.mu.Unlock()
	return n
}

// nodeInfo returns the last fingerprint's findings, probing if there is none.
func (d *Driver) nodeInfo() *nodeInfo {
	d.mu.Lock()
	n := d.node
	d.mu.Unlock()
	if n == nil {
		n = d.detectNode()
	}
	return n
}

// typedAttribute keeps numbers and booleans typed so job constraints can
// compare them (e.g. ${attr.driver.pixelstream.gpu.count} >= 2).
func typedAttribute(v string) *pstructs.Attribute {
	if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
		return pstructs.NewBoolAttribute(b)
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return pstructs.NewIntAttribute(n, "")
	}
	return pstructs.NewStringAttribute(v)
}
