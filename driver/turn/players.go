package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST scheme specifies
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// player is what the server knows about one credential id (a player
// connection, or a streamer connection). Fields other than set are guarded
// by Server.mu.
type player struct {
	id  string
	set *peerSet // what this id's allocations may reach
	// streamer ids are outside the session quota, so players can never
	// lock the streamer out of relaying.
	streamer bool

	relays  map[*relayConn]struct{}
	pending int // quota reservations not yet turned into allocations
	created int // allocations created with this id: its lifetime share

	minted     bool  // Credentials minted for this id in this process
	issuedMax  int64 // latest expiry minted by Credentials
	seenMax    int64 // latest expiry of a credential that allocated
	deadBefore int64 // credentials expiring at or before this die at deadAt
	deadAt     time.Time
	timer      *time.Timer // revocation grace, then forgetting
}

func (p *player) revokedAt(expiry int64, now time.Time) bool {
	return !p.deadAt.IsZero() && expiry <= p.deadBefore && !now.Before(p.deadAt)
}

// playerLocked returns the record for id, creating it. s.mu must be held.
func (s *Server) playerLocked(id string) *player {
	p := s.players[id]
	if p == nil {
		p = &player{id: id, set: newPeerSet(), relays: map[*relayConn]struct{}{}}
		s.players[id] = p
	}
	return p
}

// forgetLocked drops a record that holds nothing any more, and what its
// id contributed to other ids' allow-lists. s.mu must be held.
func (s *Server) forgetLocked(p *player) {
	if s.players[p.id] != p || len(p.relays) > 0 || p.pending > 0 {
		return
	}
	delete(s.players, p.id)
	if p.timer != nil {
		p.timer.Stop()
	}
	for owner := range s.contributions[p.id] {
		owner.set.drop(p.id)
	}
	delete(s.contributions, p.id)
	p.set.mu.RLock()
	for src := range p.set.sources {
		if c := s.contributions[src]; c != nil {
			delete(c, p)
		}
	}
	p.set.mu.RUnlock()
}

// scheduleForgetLocked arranges for an idle record to be dropped once
// nothing in it matters: every credential it knows of has expired (and with
// it any revocation). In-process credentials of a player connection are
// forgotten sooner, on Revoke (closeRevoked). s.mu must be held.
func (s *Server) scheduleForgetLocked(p *player, now time.Time) {
	if s.closed || len(p.relays) > 0 || p.pending > 0 || (p.timer != nil && !p.deadAt.IsZero() && now.Before(p.deadAt)) {
		return
	}
	until := max(p.issuedMax, p.seenMax, p.deadBefore)
	d := time.Until(time.Unix(until+1, 0))
	if p.timer != nil {
		p.timer.Stop()
	}
	p.timer = time.AfterFunc(max(d, 0), func() {
		defer s.recoverPanic("forget")
		s.mu.Lock()
		defer s.mu.Unlock()
		if time.Now().Unix() > max(p.issuedMax, p.seenMax, p.deadBefore) {
			s.forgetLocked(p)
		}
	})
}

// Players is the number of credential ids the server holds a record for
// (live players, streamers, and revoked ones within their grace).
func (s *Server) Players() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.players)
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
// RevokeGrace after Revoke(playerID), whichever is first. Call Revoke when
// the player's connection closes: with the server's own secret (Config.Secret
// nil) that also forgets the player's record.
func (s *Server) Credentials(playerID string) ICEServer {
	return s.mint(playerID, false)
}

// StreamerCredentials is Credentials for a streamer connection: its
// allocations count against its own per-id quotas only, never the session
// quota that players share, so players cannot lock the streamer out.
func (s *Server) StreamerCredentials(key string) ICEServer {
	return s.mint(key, true)
}

// MarkStreamer tells the server that key is a streamer connection, as
// StreamerCredentials does, for credentials minted with Credentials.
func (s *Server) MarkStreamer(key string) {
	if key == "" {
		return
	}
	s.mu.Lock()
	s.playerLocked(key).streamer = true
	s.mu.Unlock()
}

func (s *Server) mint(id string, streamer bool) ICEServer {
	ice := ICEServer{URLs: s.URLs()}
	if id == "" {
		s.log.Error("credentials requested for an empty id; returning URLs without credentials")
		return ice
	}
	now := time.Now()
	s.mu.Lock()
	p := s.playerLocked(id)
	p.minted = true
	p.streamer = p.streamer || streamer
	expiry := now.Add(s.cfg.ttl).Unix()
	if expiry <= p.deadBefore {
		// Same second as a Revoke: step past it so these stay valid.
		expiry = p.deadBefore + 1
	}
	p.issuedMax = max(p.issuedMax, expiry)
	s.scheduleForgetLocked(p, now)
	s.mu.Unlock()

	ice.Username = strconv.FormatInt(expiry, 10) + ":" + id
	ice.Credential = restPassword(s.secret, ice.Username)
	return ice
}

// Revoke ends a player's access: credentials minted for it so far stop
// working, and its allocations are closed, RevokeGrace from now; what it
// advertised to others leaves their allow-lists then too. Credentials minted
// for the same id after Revoke are not affected. Call it on every player
// connection close, subscribed or not.
func (s *Server) Revoke(playerID string) {
	if playerID == "" {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.players[playerID]
	if p == nil {
		if s.private {
			// Nothing was minted or allocated for it here, and an id this
			// server never minted is refused anyway.
			return
		}
		p = s.playerLocked(playerID)
	}
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
	defer s.recoverPanic("revoke")
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.players[p.id] != p {
		return
	}
	if s.private && p.issuedMax <= p.deadBefore {
		// Every credential of this id was minted here and is revoked; an
		// unknown id is refused, so the record has nothing left to say.
		s.forgetLocked(p)
		return
	}
	// Minted again after the revoke (a live id), or a shared secret (the
	// revocation must outlive credentials minted elsewhere): the record
	// stays until what it knows of has expired.
	p.timer = nil
	s.scheduleForgetLocked(p, now)
}

// AllowFromSDP admits, for playerID only, the UDP addresses the streamer
// advertised in an SDP it sent to that player (a=candidate lines and real
// c=/m= addresses). Call it before forwarding the SDP to the player, so the
// player cannot ask for a permission before the server knows the address.
func (s *Server) AllowFromSDP(playerID, sdp string) {
	s.allowSDP(playerID, streamerSource, sdp)
}

// AllowFromCandidate admits, for playerID only, the address of one ICE
// candidate ("candidate:..." line) the streamer sent to that player.
func (s *Server) AllowFromCandidate(playerID, candidate string) {
	s.allowCandidate(playerID, streamerSource, candidate)
}

// AllowFromPlayerSDP admits, for the streamer connection key, the UDP
// addresses player playerID advertised to it in an SDP: with ForceTURN the
// streamer relays too, towards what its players advertise. Each player has
// a fixed share of the streamer's list (the oldest of its addresses is
// forgotten first), and its share goes when the player is revoked.
func (s *Server) AllowFromPlayerSDP(key, playerID, sdp string) {
	s.allowSDP(key, playerID, sdp)
}

// AllowFromPlayerCandidate is AllowFromPlayerSDP for one ICE candidate line.
func (s *Server) AllowFromPlayerCandidate(key, playerID, candidate string) {
	s.allowCandidate(key, playerID, candidate)
}

// streamerSource names the streamer's share of a player's allow-list.
const streamerSource = "\x00streamer"

func (s *Server) allowSDP(owner, source, sdp string) {
	defer s.recoverPanic("allow_sdp")
	aps, errs := parseSDP(sdp)
	for i, err := range errs {
		if i == 3 {
			s.log.Warn("ignoring further unparsable SDP lines", "owner", owner, "count", len(errs))
			break
		}
		s.log.Warn("ignoring unparsable line in an SDP", "owner", owner, "error", err)
	}
	s.allow(owner, source, aps)
}

func (s *Server) allowCandidate(owner, source, candidate string) {
	defer s.recoverPanic("allow_candidate")
	if strings.TrimSpace(candidate) == "" {
		return // end-of-candidates
	}
	ap, ok, err := parseCandidate(candidate)
	if err != nil {
		s.log.Debug("ignoring unparsable candidate", "owner", owner, "error", err)
		return
	}
	if ok {
		s.allow(owner, source, []netip.AddrPort{ap})
	}
}

// allow adds source's addresses to owner's list: O(1) per address, no copy
// of the list, and s.mu only for the two map lookups.
func (s *Server) allow(owner, source string, aps []netip.AddrPort) {
	if len(aps) == 0 || owner == "" {
		return
	}
	if len(aps) > maxAddrsPerSource {
		aps = aps[len(aps)-maxAddrsPerSource:]
	}
	s.mu.Lock()
	p := s.playerLocked(owner)
	if source != streamerSource {
		// The source gets a record too, so closing its connection (Revoke)
		// forgets its share here even if it never asked for credentials.
		s.playerLocked(source)
		c := s.contributions[source]
		if c == nil {
			c = map[*player]struct{}{}
			s.contributions[source] = c
		}
		c[p] = struct{}{}
	}
	s.mu.Unlock()
	if !p.set.add(source, aps) {
		s.log.Warn("allow-list full: addresses refused", "owner", owner, "source", source)
		return
	}
	s.log.Trace("addresses allowed", "owner", owner, "addresses", len(aps))
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
// Every quota is per credential id except the session's, which players
// share and streamers are outside of; no quota counts over the server's
// whole life, so none can become a permanent denial for everyone.
func (s *Server) checkQuota(userID string) (ok bool) {
	defer s.recoverPanic("quota")
	_, id, valid := splitUsername(userID)
	if !valid {
		return false
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireReservationsLocked(now)
	p := s.playerLocked(id)
	var quota string
	switch {
	case p.streamer:
		// A streamer connection (loopback only, the session's own app)
		// relays for every player of its life, several allocations each:
		// its own budget, the size of the players' together, and no
		// lifetime count.
		if len(p.relays)+p.pending >= s.cfg.quotas.PerSession {
			quota = "streamer"
		}
	case len(p.relays)+p.pending >= s.cfg.quotas.PerPlayer:
		quota = "player"
	case p.created+p.pending >= s.cfg.quotas.Lifetime:
		quota = "lifetime"
	case s.livePlayers+s.pendingPlayers >= s.cfg.quotas.PerSession:
		quota = "session"
	}
	if quota != "" {
		s.metrics.quotaRejections.WithLabelValues(quota).Inc()
		s.log.Warn("allocation refused: quota reached", "player", id, "quota", quota)
		return false
	}
	p.pending++
	if !p.streamer {
		s.pendingPlayers++
	}
	s.reservations = append(s.reservations, quotaReservation{p: p, expires: now.Add(reservationTTL)})
	return true
}

func (s *Server) expireReservationsLocked(now time.Time) {
	kept := s.reservations[:0]
	for _, r := range s.reservations {
		if now.After(r.expires) {
			s.releaseReservationLocked(r.p)
			continue
		}
		kept = append(kept, r)
	}
	clear(s.reservations[len(kept):])
	s.reservations = kept
}

func (s *Server) releaseReservationLocked(p *player) {
	p.pending--
	if !p.streamer {
		s.pendingPlayers--
	}
	s.scheduleForgetLocked(p, time.Now())
}

func (s *Server) takeReservationLocked(p *player) {
	for i, r := range s.reservations {
		if r.p == p {
			s.reservations = append(s.reservations[:i], s.reservations[i+1:]...)
			p.pending--
			if !p.streamer {
				s.pendingPlayers--
			}
			return
		}
	}
}
