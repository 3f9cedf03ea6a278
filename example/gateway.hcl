# A gateway configuration file with every setting (nomad-driver-pixelstream
# gateway -config example/gateway.hcl). Flags given as well win over it.
# The secret is best left out of the file: $PIXELSTREAM_GATEWAY_SECRET.

listen       = "0.0.0.0:8080"          # visitors' address
nomad_addr   = "http://127.0.0.1:4646" # the Nomad HTTP API
# nomad_token = ""                     # default $NOMAD_TOKEN
namespace    = "default"
job          = "pixelstream-session"   # the parameterized session job
service      = "pixelstream-session"   # its provider = "nomad" service
peer_service = "pixelstream-gateway"   # the gateway's own service ("": every replica dispatches)
# secret     = ""                      # default $PIXELSTREAM_GATEWAY_SECRET
min_free       = 1    # ready, unclaimed sessions kept warm
max_sessions   = 10   # sessions in all, starting ones included
max_queue      = 1000 # waiting visitors; past it 503 with Retry-After
route          = "proxy" # or "redirect"
state_interval = "1s"
log_level      = "info"

# The operator endpoints (/api/sessions, /api/queue, /metrics) on a listener
# of their own, with a token that is not the fleet secret.
operator_listen = "127.0.0.1:8081"
# operator_token = ""                  # default $PIXELSTREAM_OPERATOR_TOKEN

# Per-visitor caps.
max_claims_per_address  = 4
max_waiting_per_address = 4
max_event_streams       = 2000

# Sites that may embed the gateway's pages in a frame.
frame_ancestors = []

# Load balancers in front of the gateway (addresses or CIDRs): their
# X-Forwarded-For names the visitor's address for the caps above.
trusted_proxies = []

dispatch_meta = {
  fleet = "demo"
}

# tls {
#   cert_file = "/etc/pixelstream/gateway.pem"
#   key_file  = "/etc/pixelstream/gateway-key.pem"
# }

# The sessions serve TLS (their task's tls block).
# session_tls {
#   ca_file     = "/etc/pixelstream/sessions-ca.pem"
#   server_name = "session.example.com"
# }

auth {
  mode = "none" # "token" or "jwt"
  # token           = ""       # mode = "token"
  # algorithm       = "RS256"  # mode = "jwt": HS256 (hmac_key) or RS256 (public_key_file)
  # hmac_key        = ""
  # public_key_file = "/etc/pixelstream/jwt.pub"
  # issuer          = "https://login.example.com/"
  # audience        = "game"
  # cookie          = "pixelstream_auth"
  # query           = "auth"
}
