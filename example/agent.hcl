# A single-node Nomad agent (server and client) on loopback with the
# pixelstream plugin, as `make demo` runs it. @DIR@ is replaced with the
# demo's state directory. On a real node, point plugin_dir at the directory
# holding nomad-driver-pixelstream and keep the plugin block.
data_dir   = "@DIR@/data"
plugin_dir = "@DIR@/plugins"
bind_addr  = "127.0.0.1"

# No call to HashiCorp's update-check service at start: nodes often may not
# reach it, and a test or demo agent never needs it.
disable_update_check = true

advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}

server {
  enabled          = true
  bootstrap_expect = 1
}

client {
  enabled = true
  # Ports for jobs come from loopback, so the demo is reachable only from
  # this machine. On a real node leave this out (Nomad uses the default
  # route's interface) or name the interface players reach.
  network_interface = "lo"
  options {
    # Cloud-metadata fingerprinters time out on machines without them.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}

plugin "nomad-driver-pixelstream" {
  config {
    runtime_dir = "/run/pixelstream"
    # no_gpu      = "refuse"   # or "software" to let GPU-less tasks render in software
    # allow_root  = false
  }
}
