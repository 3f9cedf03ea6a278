package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST scheme specifies
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// player is what the server knows about one player id. Fields other than
// set are guarded by Server.mu.
type player struct {
	id  string
	set atomic.Pointer[peerSet]

	relays  map[*relayConn]struct{}
	pending int // quota reservations not yet turned into allocations
	total   int // allocations ever created with this id

	issuedMax  int64     // latest expiry minted by Credentials
	deadBefore int64     // credentials expiring at or before this die at deadAt
	deadAt     time.Time // zero: never revoked
	timer      *time.Timer
}

func (p *player) revokedAt(expiry int64, now time.Time) bool {
	return !p.deadAt.IsZero() && expiry <= p.deadBefore && !now.Before(p.deadAt)
}

// playerLocked returns the record for id, creating it. s.mu must be held.
func (s *Server) playerLocked(id string) *player {
	p := s.players[id]
	if p == nil {
		p = &player{id: id, relays: map[*relayConn]struct{}{}}
		p.set.Store(emptyPeerSet)
		s.players[id] = p
	}
	return p
}

// splitUsername parses the TURN REST username "<unix expiry>:<player id>".
func splitUsername(u string) (expiry int64, id string, ok bool) {
	ts, id, found := strings.Cut(u, ":")
	if !found || id == "" || ts == "" || ts[0] == '-' || ts[0] == '+' {
		return 0, "", false
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return expiry, id, true
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Credentials mints time-limited TURN credentials for one player and
// returns them with this server's URLs, ready for RTCPeerConnection's
// iceServers. The credentials are valid until CredentialTTL passes or
// RevokeGrace after Revoke(playerID), whichever is first.
func (s *Server) Credentials(playerID string) ICEServer {
	ice := ICEServer{URLs: s.URLs()}
	if playerID == "" {
		s.log.Error("credentials requested for an empty player id; returning URLs without credentials")
		return ice
	}
	now := time.Now()
	s.mu.Lock()
	p := s.playerLocked(playerID)
	expiry := now.Add(s.cfg.ttl).Unix()
	if expiry <= p.deadBefore {
		// Same second as a Revoke: step past it so these stay valid.
		expiry = p.deadBefore + 1
	}
	p.issuedMax = max(p.issuedMax, expiry)
	s.mu.Unlock()

	ice.Username = strconv.FormatInt(expiry, 10) + ":" + playerID
	ice.Credential = restPassword(s.secret, ice.Username)
	return ice
}

// Revoke ends a player's access: credentials minted for it so far stop
// working, and its allocations are closed, RevokeGrace from now. Credentials
// minted for the same id after Revoke are not affected.
func (s *Server) Revoke(playerID string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	p := s.playerLocked(playerID)
	// Credentials minted elsewhere with the shared secret (standalone) are
	// not in issuedMax; now+TTL covers every one that can still be valid.
	p.deadBefore = max(p.deadBefore, p.issuedMax, now.Add(s.cfg.ttl).Unix())
	p.deadAt = now.Add(s.cfg.grace)
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = time.AfterFunc(s.cfg.grace, func() { s.closeRevoked(p) })
	s.log.Debug("player revoked", "player", playerID, "grace", s.cfg.grace)
}

func (s *Server) closeRevoked(p *player) {
	now := time.Now()
	var doomed []*relayConn
	s.mu.Lock()
	for rc := range p.relays {
		if p.revokedAt(rc.credExpiry, now) {
			doomed = append(doomed, rc)
		}
	}
	s.mu.Unlock()
	for _, rc := range doomed {
		_ = rc.Close()
	}
	if len(doomed) > 0 {
		s.log.Info("closed allocations of a revoked player", "player", p.id, "allocations", len(doomed))
	}
}

// pruneLocked forgets players whose every credential has expired and who
// hold nothing, so a long session does not accumulate records.
func (s *Server) pruneLocked(now time.Time) {
	if len(s.players) < 256 {
		return
	}
	for id, p := range s.players {
		if len(p.relays) == 0 && p.pending == 0 && max(p.issuedMax, p.deadBefore) < now.Unix() {
			delete(s.players, id)
		}
	}
}

// AllowFromSDP admits, for playerID only, the UDP addresses the streamer
// advertised in an SDP it sent to that player (a=candidate lines and real
// c=/m= addresses). Call it before forwarding the SDP to the player, so the
// player cannot ask for a permission before the server knows the address.
func (s *Server) AllowFromSDP(playerID, sdp string) {
	aps, errs := parseSDP(sdp)
	for _, err := range errs {
		s.log.Warn("ignoring unparsable line in the streamer's SDP", "player", playerID, "error", err)
	}
	s.allow(playerID, aps)
}

// AllowFromCandidate admits, for playerID only, the address of one ICE
// candidate ("candidate:..." line) the streamer sent to that player.
func (s *Server) AllowFromCandidate(playerID, candidate string) {
	if strings.TrimSpace(candidate) == "" {
		return // end-of-candidates
	}
	ap, ok, err := parseCandidate(candidate)
	if err != nil {
		s.log.Warn("ignoring unparsable streamer candidate", "player", playerID, "error", err)
		return
	}
	if ok {
		s.allow(playerID, []netip.AddrPort{ap})
	}
}

func (s *Server) allow(playerID string, aps []netip.AddrPort) {
	if len(aps) == 0 || playerID == "" {
		return
	}
	s.mu.Lock()
	p := s.playerLocked(playerID)
	p.set.Store(p.set.Load().with(aps))
	s.mu.Unlock()
	s.log.Debug("streamer addresses allowed", "player", playerID, "addresses", len(aps))
}

// quotaReservation holds a quota slot between the quota check and the relay
// socket being created (two steps inside pion), so concurrent Allocate
// requests cannot both pass the last free slot.
type quotaReservation struct {
	p       *player
	expires time.Time
}

const reservationTTL = 5 * time.Second

// checkQuota is pion's QuotaHandler: it reserves a slot or answers 486.
func (s *Server) checkQuota(userID string) bool {
	_, id, ok := splitUsername(userID)
	if !ok {
		return false
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireReservationsLocked(now)
	p := s.playerLocked(id)
	pending := len(s.reservations)
	var quota string
	switch {
	case len(p.relays)+p.pending >= s.cfg.quotas.PerPlayer:
		quota = "player"
	case s.live+pending >= s.cfg.quotas.PerSession:
		quota = "session"
	case s.created+pending >= s.cfg.quotas.Lifetime:
		quota = "lifetime"
	}
	if quota != "" {
		s.metrics.quotaRejections.WithLabelValues(quota).Inc()
		s.log.Warn("allocation refused: quota reached", "player", id, "quota", quota)
		return false
	}
	p.pending++
	s.reservations = append(s.reservations, quotaReservation{p: p, expires: now.Add(reservationTTL)})
	return true
}

func (s *Server) expireReservationsLocked(now time.Time) {
	kept := s.reservations[:0]
	for _, r := range s.reservations {
		if now.After(r.expires) {
			r.p.pending--
			continue
		}
		kept = append(kept, r)
	}
	clear(s.reservations[len(kept):])
	s.reservations = kept
}

func (s *Server) takeReservationLocked(p *player) {
	for i, r := range s.reservations {
		if r.p == p {
			p.pending--
			s.reservations = append(s.reservations[:i], s.reservations[i+1:]...)
			return
		}
	}
}
