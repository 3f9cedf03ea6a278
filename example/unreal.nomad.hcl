# A template for a real Unreal Engine Pixel Streaming build on a GPU node.
# Adjust the artifact URL, the executable name and the resources; store the
# player token in a Nomad variable first:
#   nomad var put nomad/jobs/unreal-game token=$(openssl rand -hex 16)
job "unreal-game" {
  datacenters = ["*"]

  # Only nodes where the driver is healthy, with a GPU that can encode.
  constraint {
    attribute = "${attr.driver.pixelstream.gpu.nvenc}"
    value     = "true"
  }

  group "session" {
    # One place for the streamer id: the service tags and meta, and the app.
    meta {
      streamer_id = "DefaultStreamer"
    }

    network {
      port "http" {}
      port "turn" {}
    }

    # Consul sees the session as healthy only while Unreal's streamer is
    # connected, so a lobby or load balancer routes players to real streams.
    service {
      name     = "unreal-game"
      port     = "http"
      provider = "consul"
      tags     = ["pixelstream", "streamer-${NOMAD_META_streamer_id}"]
      meta {
        streamer_id = "${NOMAD_META_streamer_id}"
      }
      check {
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "game" {
      driver       = "pixelstream"
      kill_signal  = "SIGINT"   # Unreal shuts down cleanly on SIGINT
      kill_timeout = "30s"

      artifact {
        source      = "https://builds.example.com/MyGame-Linux-Shipping.tar.gz"
        destination = "local/MyGame"
      }

      template {
        data        = "PLAYER_TOKEN={{ with nomadVar \"nomad/jobs/unreal-game\" }}{{ .token }}{{ end }}"
        destination = "secrets/player.env"
        env         = true
        # Root's and unreadable to the app: the session gets the value
        # through its config; the driver refuses a readable one.
        perms       = "0400"
      }

      config {
        executable  = "local/MyGame/MyGame.sh"
        args        = ["-AudioMixer", "-PixelStreamingEncoderCodec=H264"]
        resolution  = "1920x1080"
        render      = "vulkan"
        streamer_id = "${NOMAD_META_streamer_id}"
        http_port   = "http"
        turn_port   = "turn"
        max_players = 4
        auth {
          token = "${PLAYER_TOKEN}"
        }
        gpu {
          adapter = "auto"
        }
      }

      resources {
        cpu    = 8000
        memory = 16384
        device "nvidia/gpu" {
          count = 1
        }
      }
    }
  }
}
