# The demo: the stand-in streamer (example/streamer) as a Pixel Streaming app,
# with the player page, signalling, TURN and audio that the driver adds.
# `make demo` runs it; by hand:
#   nomad job run -var streamer=$PWD/build/streamer example/demo.nomad.hcl
variable "streamer" {
  type        = string
  description = "Absolute path of the stand-in streamer (make build writes build/streamer)."
}

variable "resolution" {
  type    = string
  default = "1280x720"
}

job "pixelstream-demo" {
  datacenters = ["*"]

  group "session" {
    network {
      port "http" {}
      port "turn" {}
    }

    restart {
      attempts = 2
      mode     = "fail"
    }

    task "game" {
      driver       = "pixelstream"
      kill_timeout = "10s"

      config {
        executable = var.streamer
        resolution = var.resolution
        render     = "none" # the stand-in draws with X11, no GPU needed
        audio      = true
        http_port  = "http"
        turn_port  = "turn"
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
