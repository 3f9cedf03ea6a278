# One session per user, on demand: a parameterized batch job. Each dispatch
# is a session of its own that ends by itself when nobody has watched it for
# idle_timeout, or at max_session_duration, and frees its GPU.
#
# Two ways to use it:
#
# 1. By hand (pool = false, the default): the dispatch names the player token.
#
#   nomad job run -var streamer=$PWD/build/streamer example/session.nomad.hcl
#   nomad job dispatch -meta token=$(openssl rand -hex 16) pixelstream-session
#
# 2. Behind the gateway (pool = true, see example/gateway.nomad.hcl): the
#    gateway dispatches sessions into a warm pool and claims one per visitor
#    with the secret from the Nomad variable nomad/jobs/pixelstream-session
#    (key gateway_secret); each claim mints the visitor's one-time player
#    token. An unclaimed session waits for its visitor however long it takes;
#    idle_timeout counts once it is claimed.
#
#   nomad var put nomad/jobs/pixelstream-session gateway_secret=$SECRET
#   nomad job run -var pool=true -var streamer=$PWD/build/streamer example/session.nomad.hcl
#
# For an Unreal build, replace the executable with the build's launch script
# (an artifact block, as in example/unreal.nomad.hcl) and add a GPU device.
variable "streamer" {
  type        = string
  description = "Absolute path of the app to run (make build writes the stand-in to build/streamer)."
}

variable "clip" {
  type        = string
  default     = ""
  description = "Stand-in only: absolute path of a VP8 IVF clip (make clip) sent from memory instead of encoding the display (-StandInClip); keep it in the executable's directory, which the session's sandbox shows the app."
}

variable "pool" {
  type        = bool
  default     = false
  description = "true: sessions for the gateway (claims with the secret from a Nomad variable); false: the dispatch names the player token."
}

variable "claim_timeout" {
  type        = string
  default     = "60s"
  description = "pool = true: how long a claim waits for its visitor before the session is free again."
}

variable "return_to_pool" {
  type        = bool
  default     = false
  description = "pool = true: a session whose visitor left is free for the next one (default: it ends after idle_timeout)."
}

variable "tls" {
  type        = bool
  default     = false
  description = "The player port serves HTTPS/WSS with the certificate and key in the Nomad variable nomad/jobs/pixelstream-session (keys tls_cert, tls_key); the gateway then needs session_tls { ca_file }."
}

variable "idle_timeout" {
  type    = string
  default = "5m"
}

variable "max_session_duration" {
  type    = string
  default = "2h"
}

variable "cpu" {
  type        = number
  default     = 1000
  description = "CPU (MHz) Nomad reserves per session: how many sessions fit on a node."
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

job "pixelstream-session" {
  datacenters = var.datacenters
  type        = "batch"

  parameterized {
    # A pool session learns its visitor (a pseudonym) and the subject the
    # visitor's JWT carried with its claim, not at dispatch: its task events
    # show both. The gateway's dispatches carry only its dispatch_meta.
    meta_required = var.pool ? [] : ["token"]
    meta_optional = []
  }

  group "session" {
    network {
      port "http" {}
      port "turn" {}
    }

    # Nomad's own service discovery: the gateway watches this service with
    # blocking queries and sends visitors only to sessions whose streamer is
    # connected (/readyz; it needs no token).
    service {
      name     = "pixelstream-session"
      port     = "http"
      provider = "nomad"
      tags     = ["pixelstream"]

      check {
        type            = "http"
        protocol        = var.tls ? "https" : "http"
        tls_skip_verify = var.tls
        path            = "/readyz"
        interval        = "5s"
        timeout         = "2s"
      }
    }

    # A session that ended (idle, max duration) is done; one that failed is
    # not retried in place: the user (or the gateway) dispatches a new one.
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
      kill_timeout = "10s"

      dynamic "template" {
        for_each = var.pool ? [1] : []
        content {
          data        = "GATEWAY_SECRET={{ with nomadVar \"nomad/jobs/pixelstream-session\" }}{{ .gateway_secret }}{{ end }}"
          destination = "secrets/gateway.env"
          env         = true
          # Root's and unreadable to the app: the session gets the value
          # through its config; the driver refuses a readable one.
          perms       = "0400"
        }
      }

      dynamic "template" {
        for_each = var.tls ? [1] : []
        content {
          data        = "{{ with nomadVar \"nomad/jobs/pixelstream-session\" }}{{ .tls_cert }}\n{{ .tls_key }}{{ end }}"
          destination = "secrets/tls.pem"
          perms       = "0644" # read by the session, which runs as the task user
        }
      }

      config {
        executable           = var.streamer
        args                 = var.clip == "" ? [] : ["-StandInClip=${var.clip}"]
        resolution           = "1280x720"
        render               = "none"
        http_port            = "http"
        turn_port            = "turn"
        max_players          = 1
        idle_timeout         = var.idle_timeout
        max_session_duration = var.max_session_duration
        startup_timeout      = "2m"
        stop_timeout         = "10s"

        # Exactly one of the two is set: a pool session's player token
        # comes from each claim.
        auth {
          token = var.pool ? "" : "${NOMAD_META_token}"
        }
        tls {
          cert_file = var.tls ? "secrets/tls.pem" : ""
          key_file  = var.tls ? "secrets/tls.pem" : ""
        }
        gateway {
          secret         = var.pool ? "${GATEWAY_SECRET}" : ""
          claim_timeout  = var.pool ? var.claim_timeout : ""
          return_to_pool = var.pool ? var.return_to_pool : false
        }
      }

      resources {
        cpu    = var.cpu
        memory = 512
      }
    }
  }
}
