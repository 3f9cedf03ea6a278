# A session in bridge mode (the group's own network namespace, Nomad's
# standard for production jobs and Consul Connect), registered in Nomad's own
# service discovery with a check on /readyz: the service passes only while
# the app's streamer is connected. No Consul needed.
#
# The client needs the CNI reference plugins and iptables
# (Debian: apt-get install containernetworking-plugins iptables) and
#   client { cni_path = "/usr/lib/cni" }
# By hand, with the demo agent (make demo) and the stand-in streamer:
#   nomad job run -var streamer=$PWD/build/streamer example/bridge.nomad.hcl
#   nomad service info pixelstream-bridge      # address and port players use
variable "streamer" {
  type        = string
  description = "Absolute path of the app (make build writes the stand-in to build/streamer)."
}

job "pixelstream-bridge" {
  datacenters = ["*"]

  group "session" {
    network {
      mode = "bridge"
      # Players reach the host port Nomad picks; Nomad forwards it to `to`
      # inside the namespace, where the session listens on 0.0.0.0:<to>.
      port "http" {
        to = 8080
      }
      port "turn" {
        to = 3478
      }
    }

    service {
      name     = "pixelstream-bridge"
      port     = "http"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "game" {
      driver       = "pixelstream"
      kill_timeout = "10s"

      config {
        executable = var.streamer
        resolution = "1280x720"
        render     = "none" # the stand-in draws with X11; an Unreal build says "vulkan"
        http_port  = "http"
        turn_port  = "turn"

        # Behind a NAT or a port-remapping host, tell players the outside
        # address and port of the TURN port (both default to the host side):
        # turn {
        #   public_address = "${attr.unique.platform.aws.public-ipv4}"
        #   public_port    = "${NOMAD_META_turn_public_port}"
        # }
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
