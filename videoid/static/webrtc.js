// Shared by the customer and operator pages: one peer connection to the server.
"use strict";
window.videoid = window.videoid || {};

videoid.show = function (id, screens) {
  for (const s of screens) document.getElementById(s).hidden = s !== id;
};

videoid.request = function (socket, event, payload) {
  // An acknowledged request; rejects with the server's {code, message}.
  return new Promise((resolve, reject) => {
    socket.timeout(20000).emit(event, payload || {}, (err, reply) => {
      if (err) reject({ code: "timeout", message: "The server did not answer." });
      else if (!reply || !reply.ok) reject((reply && reply.error) || { code: "unknown" });
      else resolve(reply);
    });
  });
};

// The server does not trickle: an offer goes once candidates are gathered (or 3 s).
videoid.gathered = function (pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const timer = setTimeout(resolve, 3000);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
};

// The server's ice_servers ({urls, username?, credential?}: TURN credentials expire)
// and ice_transport_policy ("relay": through TURN only) as RTCPeerConnection takes them.
videoid.iceConfig = function (iceServers, policy) {
  return {
    iceServers: (iceServers || []).map((s) => (typeof s === "string" ? { urls: s } : s)),
    iceTransportPolicy: policy === "relay" ? "relay" : "all",
  };
};

videoid.connectMedia = async function (socket, localStream, remoteVideo, iceServers, onState, policy) {
  const pc = new RTCPeerConnection(videoid.iceConfig(iceServers, policy));
  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
  // without a camera or microphone, still receive the other side's
  for (const kind of ["audio", "video"]) {
    if (!localStream.getTracks().some((t) => t.kind === kind)) pc.addTransceiver(kind, { direction: "recvonly" });
  }
  const remote = new MediaStream();
  remoteVideo.srcObject = remote;
  pc.ontrack = (e) => { remote.addTrack(e.track); remoteVideo.play().catch(() => {}); };
  pc.onconnectionstatechange = () => onState && onState(pc.connectionState);
  await pc.setLocalDescription(await pc.createOffer());
  await videoid.gathered(pc);
  const reply = await videoid.request(socket, "webrtc_offer",
    { type: "offer", sdp: pc.localDescription.sdp });
  await pc.setRemoteDescription(reply.answer);
  return pc;
};
