# One session per user, on demand: a parameterized batch job. Each dispatch
# starts a session whose player token is the one given at dispatch; the
# session ends by itself when nobody has watched it for idle_timeout, or at
# max_session_duration, and frees its GPU.
#
#   nomad job run -var streamer=$PWD/build/streamer example/session.nomad.hcl
#   nomad job dispatch -meta token=$(openssl rand -hex 16) pixelstream-session
#
# For an Unreal build, replace the executable with the build's launch script
# (an artifact block, as in example/unreal.nomad.hcl) and add a GPU device.
variable "streamer" {
  type        = string
  description = "Absolute path of the app to run (make build writes the stand-in to build/streamer)."
}

variable "idle_timeout" {
  type    = string
  default = "5m"
}

variable "max_session_duration" {
  type    = string
  default = "2h"
}

job "pixelstream-session" {
  datacenters = ["*"]
  type        = "batch"

  parameterized {
    meta_required = ["token"]
  }

  group "session" {
    network {
      port "http" {}
      port "turn" {}
    }

    # A session that ended (idle, max duration) is done; one that failed is
    # not retried in place: the user dispatches a new one.
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "game" {
      driver       = "pixelstream"
      user         = "pixelstream"
      kill_timeout = "10s"

      config {
        executable           = var.streamer
        resolution           = "1280x720"
        render               = "none"
        http_port            = "http"
        turn_port            = "turn"
        max_players          = 1
        idle_timeout         = var.idle_timeout
        max_session_duration = var.max_session_duration
        startup_timeout      = "2m"
        stop_timeout         = "10s"
        auth {
          token = "${NOMAD_META_token}"
        }
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
