# The fleet's front door: the one URL visitors open. A service job, any
# number of replicas (they share no state: claims are atomic at the
# sessions, and a visitor's binding cookie is signed with the shared secret).
#
#   SECRET=$(openssl rand -hex 32)
#   nomad var put nomad/jobs/pixelstream-session gateway_secret=$SECRET
#   nomad var put nomad/jobs/pixelstream-gateway gateway_secret=$SECRET operator_token=$(openssl rand -hex 32)
#   nomad job run -var pool=true -var streamer=$PWD/build/streamer example/session.nomad.hcl
#   nomad job run -var binary=$PWD/build/nomad-driver-pixelstream example/gateway.nomad.hcl
#   # open http://<node>:8080/
#
# What Nomad does, not the gateway: placing sessions on nodes with capacity
# (and GPUs), restarting a gateway replica that dies (restart block),
# rescheduling replicas off a lost node, and, with the Nomad Autoscaler,
# scaling this job's count from the gateway's own /metrics.
#
# With ACLs, give the job's workload identity a policy that may dispatch
# and read the session job and read its services, for example:
#   namespace "default" { capabilities = ["dispatch-job", "read-job", "list-jobs"] }
# (nomad acl policy apply -namespace default -job pixelstream-gateway ...);
# identity { env = true } below hands the task its token as NOMAD_TOKEN.
variable "binary" {
  type        = string
  description = "Absolute path of nomad-driver-pixelstream on the nodes (or fetch it with an artifact block)."
}

variable "port" {
  type        = number
  default     = 8080
  description = "The visitors' port on the node (0: Nomad picks one)."
}

variable "operator_port" {
  type        = number
  default     = 8081
  description = "The operator endpoints' port (/api/sessions, /api/queue, /metrics; 0: Nomad picks one). The gateway binds it on the node's loopback only."
}

variable "max_claims_per_address" {
  type        = number
  default     = 4
  description = "Most live sessions held by visitors at one network address."
}

variable "max_waiting_per_address" {
  type        = number
  default     = 4
  description = "Most waiting pages open from one network address."
}

variable "nomad_addr" {
  type        = string
  default     = ""
  description = "The Nomad HTTP API as the gateway reaches it; \"\": the local agent on port 4646."
}

variable "count" {
  type    = number
  default = 1
}

variable "min_free" {
  type    = number
  default = 1
}

variable "max_sessions" {
  type    = number
  default = 4
}

variable "max_queue" {
  type    = number
  default = 100
}

variable "extra_args" {
  type        = list(string)
  default     = []
  description = "More gateway flags, e.g. [\"-auth-mode=jwt\", ...] or [\"-route=redirect\"]."
}

variable "node_class" {
  type        = string
  default     = ""
  description = "Run the gateway only on nodes of this node_class (\"\": anywhere)."
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

job "pixelstream-gateway" {
  datacenters = var.datacenters
  type        = "service"

  group "gateway" {
    count = var.count

    dynamic "constraint" {
      for_each = var.node_class == "" ? [] : [var.node_class]
      content {
        attribute = "${node.class}"
        value     = constraint.value
      }
    }

    network {
      port "http" {
        static = var.port
      }
      port "operator" {
        static = var.operator_port
      }
    }

    service {
      name     = "pixelstream-gateway"
      port     = "http"
      provider = "nomad"

      check {
        type     = "http"
        path     = "/healthz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }

    task "gateway" {
      # raw_exec runs the host's binary; on a production cluster use the
      # exec or docker driver with an artifact block instead.
      driver = "raw_exec"

      identity {
        env = true
      }

      template {
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/pixelstream-gateway" }}
          PIXELSTREAM_GATEWAY_SECRET={{ .gateway_secret }}
          PIXELSTREAM_OPERATOR_TOKEN={{ .operator_token }}
          {{ end }}
        EOT
        destination = "secrets/gateway.env"
        env         = true
      }

      config {
        command = var.binary
        args = concat([
          "gateway",
          "-listen", "0.0.0.0:${NOMAD_PORT_http}",
          "-operator-listen", "127.0.0.1:${NOMAD_PORT_operator}",
          "-max-claims-per-address", "${var.max_claims_per_address}",
          "-max-waiting-per-address", "${var.max_waiting_per_address}",
          "-nomad-addr", var.nomad_addr != "" ? var.nomad_addr : "http://${attr.unique.network.ip-address}:4646",
          "-job", "pixelstream-session",
          "-service", "pixelstream-session",
          "-min-free", "${var.min_free}",
          "-max-sessions", "${var.max_sessions}",
          "-max-queue", "${var.max_queue}",
        ], var.extra_args)
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
