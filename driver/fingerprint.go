package driver

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/display"
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
