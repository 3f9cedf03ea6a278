# A session whose player page, API and WebSocket are HTTPS/WSS only. The
# certificate comes from a template: here a Nomad variable, in production
# typically Vault's PKI (pkiCert). When the template re-renders the files
# (a renewal), the session serves the new certificate to new connections
# without restarting and without dropping connected players
# (change_mode = "noop").
#
#   nomad var put nomad/jobs/pixelstream-tls cert=@cert.pem key=@key.pem
#   nomad job run -var streamer=$PWD/build/streamer example/tls.nomad.hcl
#
# With Vault instead (the task needs a vault block and a role), one pkiCert
# call for all three (two calls would issue two certificates):
#   {{ with pkiCert "pki/issue/pixelstream" "common_name=game.example.com" }}{{ .Cert }}{{ .CA }}{{ .Key }}{{ end }}
variable "streamer" {
  type        = string
  description = "Absolute path of the app (make build writes the stand-in to build/streamer)."
}

job "pixelstream-tls" {
  datacenters = ["*"]

  group "session" {
    network {
      port "http" {}
      port "turn" {}
    }

    task "game" {
      driver       = "pixelstream"
      kill_timeout = "10s"

      # Certificate, chain and key in one file from one template: a renewal
      # replaces them together.
      template {
        destination = "secrets/tls.pem"
        change_mode = "noop"
        perms       = "0644" # read by the session, which runs as the task user
        data        = <<-EOT
        {{- with nomadVar "nomad/jobs/pixelstream-tls" }}{{ .cert }}{{ .key }}{{ end }}
        EOT
      }

      config {
        executable = var.streamer
        resolution = "1280x720"
        render     = "none"
        http_port  = "http"
        turn_port  = "turn"
        tls {
          cert_file = "secrets/tls.pem"
          key_file  = "secrets/tls.pem"
        }
      }

      resources {
        cpu    = 1000
        memory = 512
      }
    }
  }
}
