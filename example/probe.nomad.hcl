# A minimal pixelstream job: the project's probe app on a 1280x720 virtual
# display, as user "pixelstream". The probe prints what it sees (display,
# size, user, signals) and a heartbeat, so `nomad alloc logs` shows the
# session working. Used by the e2e tests; run it yourself with
#   nomad job run -var probe=$PWD/build/probe example/probe.nomad.hcl
variable "probe" {
  type        = string
  description = "Absolute path of the probe app (make build writes build/probe)."
}

job "probe" {
  datacenters = ["*"]

  group "session" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "game" {
      driver       = "pixelstream"
      kill_timeout = "5s"

      config {
        executable = var.probe
        args       = ["--probe-tick=500ms"]
        resolution = "1280x720"
        render     = "none"
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
