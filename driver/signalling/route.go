package signalling

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// knownTypes is every message type of the protocol. A type outside it is a
// client bug or an attack and closes the sender; a known type that means
// nothing from this sender is ignored, as Epic's server does.
var knownTypes = map[string]bool{
	"answer": true, "config": true, "disconnectPlayer": true, "endpointId": true,
	"endpointIdConfirm": true, "iceCandidate": true, "identify": true, "listStreamers": true,
	"offer": true, "ping": true, "playerConnected": true, "playerCount": true,
	"playerDisconnected": true, "pong": true, "stats": true, "streamerDisconnected": true,
	"streamerList": true, "subscribe": true, "unsubscribe": true, "layerPreference": true,
	"dataChannelRequest": true, "peerDataChannels": true, "peerDataChannelsReady": true,
	"streamerDataChannels": true, "startStreaming": true, "stopStreaming": true,
	"streamerIdChanged": true, "subscribeFailed": true,
}

// maxIDLength bounds streamer ids so a streamer cannot bloat every list.
const maxIDLength = 256

// handle parses and routes one message from c. Any protocolError closes c
// and only c.
func (s *Server) handle(c *conn, data []byte) {
	var m message
	perr := parseMessage(data, &m)
	if perr == nil && !knownTypes[m.typ] {
		perr = &protocolError{code: closePolicy, reason: "unknown message type " + strconv.Quote(truncate(m.typ, 40))}
	}
	if perr == nil {
		s.metrics.received(c.role, m.typ, len(data))
		switch c.role {
		case rolePlayer:
			perr = s.fromPlayer(c, &m)
		case roleStreamer:
			perr = s.fromStreamer(c, &m)
		case roleSFU:
			perr = s.fromSFU(c, &m)
		}
	} else {
		s.metrics.received(c.role, "invalid", len(data))
	}
	if perr != nil {
		s.metrics.reject(c.role, reasonInvalid)
		s.log.Info("closing connection after a bad message", "role", c.role, "player", c.playerID, "remote", c.remote, "reason", perr.reason)
		c.close(perr.code, perr.reason)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (s *Server) ignore(c *conn, m *message) *protocolError {
	s.metrics.reject(c.role, reasonUnexpected)
	s.log.Debug("ignoring message", "role", c.role, "type", m.typ)
	return nil
}

func (s *Server) fromPlayer(c *conn, m *message) *protocolError {
	switch m.typ {
	case "ping":
		return s.pong(c, m)
	case "listStreamers":
		c.send(msgStreamerList(s.listedIDs()))
	case "subscribe":
		id, err := m.requireString("streamerId")
		if err != nil {
			return err
		}
		s.subscribe(c, id)
	case "unsubscribe":
		s.unsubscribe(c)
	case "offer", "answer":
		if _, err := m.requireString("sdp"); err != nil {
			return err
		}
		return s.toStreamer(c, m)
	case "iceCandidate":
		if _, err := candidateOf(m); err != nil {
			return err
		}
		return s.toStreamer(c, m)
	case "dataChannelRequest", "peerDataChannelsReady", "layerPreference":
		return s.toStreamer(c, m)
	case "stats":
		return s.playerStats(c, m)
	default:
		return s.ignore(c, m)
	}
	return nil
}

func (s *Server) fromStreamer(c *conn, m *message) *protocolError {
	switch m.typ {
	case "endpointId":
		return s.identify(c, m)
	case "ping":
		return s.pong(c, m)
	case "offer", "answer", "iceCandidate", "peerDataChannels":
		return s.toPlayer(c, m)
	case "disconnectPlayer":
		return s.disconnectPlayer(c, m)
	default:
		return s.ignore(c, m)
	}
}

func (s *Server) fromSFU(c *conn, m *message) *protocolError {
	switch m.typ {
	case "ping":
		return s.pong(c, m)
	case "endpointId":
		return s.identify(c, m)
	case "startStreaming":
		s.mu.Lock()
		if c.streamerID == "" {
			c.streamerID = s.uniqueID("SFU")
		}
		listed := c.listed
		s.mu.Unlock()
		if !listed {
			s.list(c, c.streamerID)
		}
	case "stopStreaming":
		s.unlist(c, "SFU stopped streaming")
	case "listStreamers":
		c.send(msgStreamerList(s.listedIDs()))
	case "subscribe":
		id, err := m.requireString("streamerId")
		if err != nil {
			return err
		}
		s.subscribe(c, id)
	case "unsubscribe":
		s.unsubscribe(c)
	case "offer", "peerDataChannels":
		return s.toPlayer(c, m)
	case "iceCandidate":
		// Towards one of its own players when it names one, else upstream.
		if pid, ok, _ := m.playerID(); ok && s.isSubscriberOf(pid, c) {
			return s.toPlayer(c, m)
		}
		return s.toStreamer(c, m)
	case "answer":
		return s.toStreamer(c, m)
	case "streamerDataChannels":
		return s.streamerDataChannels(c, m)
	default:
		return s.ignore(c, m)
	}
	return nil
}

func (s *Server) pong(c *conn, m *message) *protocolError {
	t, ok := m.field("time")
	if !ok {
		return badMessage("ping message is missing field time")
	}
	if len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return badMessage("ping message field time must be a number")
	}
	// The value is echoed byte for byte: browsers send milliseconds, some
	// Unreal versions seconds with fractions.
	c.send(msgPong(append(json.RawMessage(nil), t...)))
	return nil
}

func (s *Server) listedIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.order))
	for _, st := range s.order {
		ids = append(ids, st.streamerID)
	}
	return ids
}

// uniqueID returns id, or id with the smallest number suffix that is free.
// Callers hold s.mu.
func (s *Server) uniqueID(id string) string {
	if _, taken := s.streamers[id]; !taken {
		return id
	}
	for n := 1; ; n++ {
		cand := id + strconv.Itoa(n)
		if _, taken := s.streamers[cand]; !taken {
			return cand
		}
	}
}

func (s *Server) identify(c *conn, m *message) *protocolError {
	id, err := m.requireString("id")
	if err != nil {
		return err
	}
	if _, err := m.optionalString("protocolVersion"); err != nil {
		return err
	}
	if id == "" || len(id) > maxIDLength {
		return badMessage("endpointId message field id must be 1 to %d bytes", maxIDLength)
	}
	s.list(c, id)
	return nil
}

// list commits a streamer (or SFU) id, confirms it, and lists the streamer.
// A streamer that identifies again is renamed and its players told.
func (s *Server) list(c *conn, want string) {
	s.mu.Lock()
	if c.killed.Load() { // torn down while this message was handled
		s.mu.Unlock()
		return
	}
	wasListed := c.listed
	old := c.streamerID
	if wasListed {
		delete(s.streamers, old)
	}
	committed := s.uniqueID(want)
	var stale *conn
	var staleEvs []Event
	if prev := s.streamers[want]; prev != nil && !wasListed && s.sameStreamerReturns(want, prev, c.keyed) {
		committed, stale = want, prev
		staleEvs = s.replaceLocked(prev, c)
	}
	c.streamerID = committed
	c.listed = true
	s.streamers[committed] = c
	if !wasListed && stale == nil {
		s.order = append(s.order, c)
	}
	if c.timer != nil && c.role == roleStreamer {
		c.timer.Stop()
		c.timer = nil
	}
	c.send(msgEndpointIDConfirm(committed))
	if wasListed && old != committed {
		for p := range c.subscribers {
			p.send(msgStreamerIDChanged(committed))
		}
	}
	ev := s.event(StreamerIdentified, committed, "")
	if stale != nil {
		ev.Kind = StreamerReconnected
	}
	s.mu.Unlock()
	if stale != nil {
		s.metrics.reject(stale.role, reasonReplaced)
		s.log.Info("streamer reconnected: its new connection replaces the stale one", "streamer", committed,
			"stale_remote", stale.remote, "remote", c.remote)
		stale.close(closeGoingAway, "replaced by a new connection of streamer "+truncate(committed, 64))
		s.emit(staleEvs...)
	} else {
		s.log.Info("streamer identified", "streamer", committed, "role", c.role)
	}
	if !wasListed {
		s.emit(ev)
	}
}

// sameStreamerReturns decides whether a streamer connection identifying as
// id, while prev (still open, or closing) holds that id, is the session's own streamer
// coming back, so that it takes prev's place under the same id rather than
// being listed as a second streamer with a suffixed id. presentedKey says
// whether the new connection presented the session's streamer credential;
// without it, a connection may never take over an id. This is the one place
// that decides; callers hold s.mu.
func (s *Server) sameStreamerReturns(id string, prev *conn, presentedKey bool) bool {
	// prev may already be closing (its socket dropped, its teardown not yet
	// run): taking its place then is what keeps the id from moving.
	return presentedKey && s.cfg.StreamerID != "" && id == s.cfg.StreamerID &&
		prev.role == roleStreamer && prev.listed
}

// replaceLocked moves prev's place in the list to c (same position, so the
// first streamer stays first and the streamer count never drops) and
// detaches prev's players, which are closed as when a streamer leaves: their
// WebRTC sessions were with the lost connection, and Epic's frontend
// reconnects and subscribes again, now to c. The caller closes prev.
// Callers hold s.mu; the returned events are emitted after it is released.
func (s *Server) replaceLocked(prev, c *conn) []Event {
	prev.listed = false
	delete(s.streamers, prev.streamerID)
	for i, st := range s.order {
		if st == prev {
			s.order[i] = c
			break
		}
	}
	return s.dropPlayersLocked(prev, "reconnected")
}

// dropPlayersLocked detaches every player of streamer st: an SFU is told
// the streamer is gone, a player is closed with "streamer <id> <what>"
// (Epic's frontend reconnects and subscribes again). Callers hold s.mu.
func (s *Server) dropPlayersLocked(st *conn, what string) []Event {
	var evs []Event
	for p := range st.subscribers {
		delete(st.subscribers, p)
		p.sub = nil
		s.subscribed--
		evs = append(evs, s.event(PlayerDisconnected, st.streamerID, p.playerID))
		if p.role == roleSFU {
			p.send(msgStreamerDisconnected())
			continue
		}
		p.close(closeNormal, fmt.Sprintf("streamer %s %s", truncate(st.streamerID, 64), what))
	}
	return evs
}

// unlist removes a streamer or SFU from the list and closes its players
// (Epic's frontend then reconnects and subscribes again).
func (s *Server) unlist(c *conn, why string) {
	s.mu.Lock()
	if !c.listed {
		s.mu.Unlock()
		return
	}
	c.listed = false
	delete(s.streamers, c.streamerID)
	for i, st := range s.order {
		if st == c {
			s.order = append(s.order[:i:i], s.order[i+1:]...)
			break
		}
	}
	evs := s.dropPlayersLocked(c, "disconnected")
	evs = append(evs, s.event(StreamerDisconnected, c.streamerID, ""))
	s.mu.Unlock()
	s.log.Info("streamer gone", "streamer", c.streamerID, "why", why)
	for _, ev := range evs {
		s.emit(ev)
	}
}

// subscribe attaches player (or SFU) c to streamer id.
func (s *Server) subscribe(c *conn, id string) {
	s.mu.Lock()
	if c.killed.Load() { // torn down while this message was handled
		s.mu.Unlock()
		return
	}
	st := s.streamers[id]
	if st == nil {
		s.mu.Unlock()
		s.metrics.reject(c.role, reasonUnknownStreamer)
		c.send(msgSubscribeFailed(fmt.Sprintf("Streamer %s does not exist.", id)))
		return
	}
	var evs []Event
	if c.sub != nil {
		evs = append(evs, s.detach(c))
	}
	if max := s.cfg.MaxPlayers; max > 0 && len(st.subscribers) >= max && !c.probed {
		// Full. A player coming back after a network blip reconnects before
		// the server has noticed its old connection is dead (the ping sweep
		// takes up to the pong timeout). So ping the subscribers now and
		// decide once they had time to answer: whoever did not is gone.
		c.probed = true
		probeStart := time.Now().UnixNano()
		for sub := range st.subscribers {
			sub.enqueue(outFrame{kind: framePing})
		}
		s.mu.Unlock()
		s.emit(evs...)
		time.AfterFunc(s.limits.FullProbe, func() { s.retrySubscribe(c, id, probeStart) })
		return
	}
	c.probed = false
	if max := s.cfg.MaxPlayers; max > 0 && len(st.subscribers) >= max {
		s.mu.Unlock()
		s.emit(evs...)
		s.metrics.reject(c.role, reasonMaxPlayers)
		c.send(msgSubscribeFailed(fmt.Sprintf("Streamer %s is full. Max players = %d.", id, max)))
		return
	}
	if st.subscribers == nil {
		st.subscribers = make(map[*conn]struct{})
	}
	st.subscribers[c] = struct{}{}
	c.sub = st
	s.subscribed++
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	st.send(msgPlayerConnected(c.playerID, c.role == roleSFU))
	evs = append(evs, s.event(PlayerConnected, id, c.playerID))
	s.mu.Unlock()
	s.emit(evs...)
}

func (s *Server) unsubscribe(c *conn) {
	s.mu.Lock()
	if c.sub == nil {
		s.mu.Unlock()
		return
	}
	ev := s.detach(c)
	s.mu.Unlock()
	s.emit(ev)
}

// detach unsubscribes c and tells its streamer. Callers hold s.mu.
func (s *Server) detach(c *conn) Event {
	st := c.sub
	delete(st.subscribers, c)
	c.sub = nil
	s.subscribed--
	st.send(msgPlayerDisconnected(c.playerID))
	return s.event(PlayerDisconnected, st.streamerID, c.playerID)
}

// toStreamer forwards a message from a player (or SFU) to the streamer it is
// subscribed to, stamped with the sender's playerId. A player that sends
// before subscribing is subscribed to the first streamer, as Epic's server
// does for old frontends.
func (s *Server) toStreamer(c *conn, m *message) *protocolError {
	s.mu.RLock()
	st := c.sub
	var first string
	if st == nil && len(s.order) > 0 {
		first = s.order[0].streamerID
	}
	s.mu.RUnlock()
	if st == nil {
		if first == "" {
			s.metrics.reject(c.role, reasonNotSubscribed)
			return &protocolError{code: closePolicy, reason: m.typ + " sent before subscribe and there is no streamer"}
		}
		s.subscribe(c, first)
		s.mu.RLock()
		st = c.sub
		s.mu.RUnlock()
		if st == nil {
			return nil // subscribeFailed has told the player why
		}
	}
	s.playerSignal(st, c.playerID, m)
	if !st.relay(m.withPlayerID(c.playerID)) {
		// The streamer reads more slowly than its players write: refuse
		// the sender, never drop the streamer (and with it every player).
		s.metrics.reject(c.role, reasonStreamerBusy)
		return &protocolError{code: closeTryAgainLater, reason: fmt.Sprintf("streamer busy: more than %d bytes waiting for it", st.maxBytes-relayHeadroom(st.maxBytes))}
	}
	return nil
}

// playerSignal shows the session what a player advertises to its streamer.
func (s *Server) playerSignal(st *conn, playerID string, m *message) {
	if st.key == "" {
		return
	}
	switch m.typ {
	case "offer", "answer":
		if f := s.hooks.PlayerSDP; f != nil {
			if v, err := m.requireString("sdp"); err == nil {
				f(st.key, playerID, v)
			}
		}
	case "iceCandidate":
		if f := s.hooks.PlayerCandidate; f != nil {
			if v, err := candidateOf(m); err == nil {
				if line := candidateLine(v); line != "" {
					f(st.key, playerID, line)
				}
			}
		}
	}
}

// toPlayer forwards a streamer's message to the player it names, with the
// playerId (as a string) kept, as Wilbur does since Epic's ue5.7 line: the
// 5.7 frontend keeps it to match its stats with the streamer's, older
// frontends ignore it. Only the streamer's own players are reachable.
func (s *Server) toPlayer(st *conn, m *message) *protocolError {
	pid, ok, perr := m.playerID()
	if perr != nil {
		return perr
	}
	if !ok {
		// A streamer bug must not end the stream for everyone: drop and count.
		s.metrics.reject(st.role, reasonNoPlayerID)
		s.log.Warn("dropping message without playerId", "type", m.typ, "streamer", st.streamerID)
		return nil
	}
	var sdp string
	var cand []byte
	switch m.typ {
	case "offer", "answer":
		v, err := m.requireString("sdp")
		if err != nil {
			return err
		}
		sdp = v
	case "iceCandidate":
		v, err := candidateOf(m)
		if err != nil {
			return err
		}
		cand = v
	}
	s.mu.RLock()
	p := s.players[pid]
	ok = p != nil && p.sub == st
	s.mu.RUnlock()
	if !ok {
		s.metrics.reject(st.role, reasonUnknownPlayer)
		s.log.Debug("dropping message for a player not subscribed here", "type", m.typ, "player", pid)
		return nil
	}
	if f := s.hooks.StreamerSDP; f != nil && sdp != "" {
		f(pid, sdp)
	}
	if f := s.hooks.StreamerCandidate; f != nil && cand != nil {
		if line := candidateLine(cand); line != "" {
			f(pid, line)
		}
	}
	p.send(m.withPlayerID(pid))
	return nil
}

func (s *Server) isSubscriberOf(pid string, st *conn) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.players[pid]
	return p != nil && p.sub == st
}

func (s *Server) disconnectPlayer(st *conn, m *message) *protocolError {
	pid, ok, perr := m.playerID()
	if perr != nil {
		return perr
	}
	if !ok {
		return badMessage("disconnectPlayer message is missing field playerId")
	}
	reason, perr := m.optionalString("reason")
	if perr != nil {
		return perr
	}
	if reason == "" {
		reason = "disconnected by the streamer"
	}
	s.mu.RLock()
	p := s.players[pid]
	ok = p != nil && p.sub == st
	s.mu.RUnlock()
	if !ok {
		s.metrics.reject(st.role, reasonUnknownPlayer)
		return nil
	}
	s.log.Info("streamer disconnects player", "streamer", st.streamerID, "player", pid)
	// The streamer hears playerDisconnected once the socket is gone.
	p.close(closeInternal, reason)
	return nil
}

// streamerDataChannels goes from an SFU to its streamer, naming the SFU.
func (s *Server) streamerDataChannels(c *conn, m *message) *protocolError {
	s.mu.RLock()
	st := c.sub
	s.mu.RUnlock()
	if st == nil {
		return s.ignore(c, m)
	}
	out := m.withMember("sfuId", []byte(strconv.Quote(c.playerID)))
	if _, has := m.field("playerId"); !has {
		var mm message
		if parseMessage(out, &mm) == nil {
			out = mm.withPlayerID(c.playerID)
		}
	}
	st.send(out)
	return nil
}

// candidateOf returns the raw candidate object of an iceCandidate message.
func candidateOf(m *message) ([]byte, *protocolError) {
	v, ok := m.field("candidate")
	if !ok {
		return nil, badMessage("iceCandidate message is missing field candidate")
	}
	if len(v) == 0 || v[0] != '{' {
		return nil, badMessage("iceCandidate message field candidate must be an object")
	}
	return v, nil
}

// candidateLine extracts candidate.candidate (the a=candidate line).
func candidateLine(obj []byte) string {
	var inner message
	if parseObject(obj, &inner) != nil {
		return ""
	}
	line, _, _ := inner.str("candidate")
	return line
}

// teardown forgets a peer whose socket is gone and tells whoever cares.
func (s *Server) teardown(c *conn) {
	s.connections.Add(-1)
	s.metrics.connected(c.role, -1)
	if c.role != rolePlayer {
		s.unlist(c, "connection closed")
	}
	s.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	var evs []Event
	if c.sub != nil {
		evs = append(evs, s.detach(c))
	}
	delete(s.conns, c)
	if c.playerID != "" {
		delete(s.players, c.playerID)
	}
	s.mu.Unlock()
	c.mu.Lock()
	c.closing, c.queue = true, nil
	c.mu.Unlock()
	if c.role == rolePlayer {
		if sum := s.playerGone(c); sum != "" {
			for i := range evs {
				if evs[i].Kind == PlayerDisconnected && evs[i].PlayerID == c.playerID {
					evs[i].Quality = sum
				}
			}
		}
	}
	s.emit(evs...)
	if f := s.hooks.StreamerLeft; f != nil && c.key != "" {
		func() {
			defer s.recoverHook("streamer left hook")
			f(c.key)
		}()
	}
	if f := s.hooks.PlayerLeft; f != nil && c.role == rolePlayer && c.playerID != "" {
		func() { defer s.recoverHook("player left hook"); f(c.playerID) }()
	}
	s.log.Debug("connection closed", "role", c.role, "player", c.playerID, "remote", c.remote)
	s.wg.Done()
}

// event builds an Event with the current counts. Callers hold s.mu.
func (s *Server) event(kind EventKind, streamerID, playerID string) Event {
	return Event{Kind: kind, StreamerID: streamerID, PlayerID: playerID, Streamers: len(s.order), Players: s.subscribed}
}

func (s *Server) emit(evs ...Event) {
	f := s.hooks.Event
	if f == nil {
		return
	}
	for _, ev := range evs {
		func() {
			defer s.recoverHook("event hook")
			f(ev)
		}()
	}
}

// retrySubscribe finishes a subscribe that found its streamer full: players
// that did not answer the ping sent at probeStart are dropped, then the
// subscribe runs again and succeeds if that freed a place.
func (s *Server) retrySubscribe(c *conn, id string, probeStart int64) {
	defer s.recoverPeer(c, "timer")
	s.mu.Lock()
	st := s.streamers[id]
	var evs []Event
	var gone []*conn
	if st != nil && !c.killed.Load() {
		for sub := range st.subscribers {
			if sub.lastSeen.Load() < probeStart {
				evs = append(evs, s.detach(sub))
				gone = append(gone, sub)
			}
		}
	}
	s.mu.Unlock()
	s.emit(evs...)
	for _, g := range gone {
		s.metrics.reject(g.role, reasonPingTimeout)
		s.log.Info("dropping player that stopped answering pings to make room", "player", g.playerID, "remote", g.remote)
		g.kill()
	}
	s.subscribe(c, id)
}
