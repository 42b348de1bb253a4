//! Why a program let a packet go, sent it somewhere, or dropped it. One enum for all programs;
//! each value is a counter in `IPMP_STATS`, per member and per CPU.

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident = $value:literal, $label:literal, $drop:literal;)+) => {
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $name = $value,)+
        }

        impl Reason {
            /// Every reason, in counter order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)+];

            /// Short name used by ipmpstat and in logs.
            pub const fn label(self) -> &'static str {
                match self { $(Reason::$name => $label,)+ }
            }

            /// Whether the packet was dropped.
            pub const fn is_drop(self) -> bool {
                match self { $(Reason::$name => $drop,)+ }
            }

            pub const fn from_u32(value: u32) -> Option<Reason> {
                match value { $($value => Some(Reason::$name),)+ _ => None }
            }
        }
    };
}

reasons! {
    /// TC egress: unicast redirected to a member through `bpf_redirect_neigh`.
    TxUnicast = 0, "tx-unicast", false;
    /// TC egress: broadcast or multicast redirected to the cast member.
    TxCast = 1, "tx-cast", false;
    /// TC egress: dropped, the group has no active member (or no cast member).
    TxNoMember = 2, "tx-no-member", true;
    /// TC egress: dropped, a bucket named an ifindex that is not an active member of the group.
    TxBadEntry = 3, "tx-bad-entry", true;
    /// TC egress: dropped, the interface has no group entry.
    TxNoGroup = 4, "tx-no-group", true;
    /// TC egress: dropped, not IPv4 or IPv6 (the IPMP interface is NOARP).
    TxNotIp = 5, "tx-not-ip", true;
    /// TC egress: dropped, truncated or malformed header.
    TxMalformed = 6, "tx-malformed", true;
    /// TC egress: dropped, `bpf_fib_lookup` found no route for the destination.
    TxNoRoute = 7, "tx-no-route", true;
    /// Member ingress: ARP request for a data address bound here, answered from the member.
    ArpReply = 8, "arp-reply", false;
    /// Member ingress: ARP request for a data address bound to another member, dropped.
    ArpNotBound = 9, "arp-not-bound", true;
    /// Member ingress: neighbour solicitation for a data address bound here, answered from the member.
    NsReply = 10, "ns-reply", false;
    /// Member ingress: neighbour solicitation for a data address bound to another member, dropped.
    NsNotBound = 11, "ns-not-bound", true;
    /// Member ingress: broadcast or multicast other than IP (or neighbour discovery) passed
    /// to the cast member's own stack.
    CastPass = 12, "cast-pass", false;
    /// Member ingress: broadcast or multicast dropped on a non-cast member (no duplicates upstream).
    CastDrop = 13, "cast-drop", true;
    /// Member ingress: anything else, passed to the member's own stack.
    RxPass = 14, "rx-pass", false;
    /// Member ingress: truncated or malformed ARP/NDP (or an ICMP echo cut short of its header), passed to
    /// the stack untouched.
    RxMalformed = 15, "rx-malformed", false;
    /// Member programs: the interface has no member entry (any more); passed.
    NotMember = 16, "not-member", false;
    /// Member TC egress: an ARP request's sender was a data address bound elsewhere; rewritten.
    ArpSrcRewrite = 17, "arp-src-rewrite", false;
    /// Member TC egress: anything else the member sends, passed (what the IPMP interface sent
    /// through it was counted there, as tx-unicast or tx-cast, and is not counted again).
    MemberTxPass = 18, "member-tx-pass", false;
    /// TC egress: dropped, a helper failed (the skb could not be made writable).
    TxError = 19, "tx-error", true;
    /// Member programs: a helper failed (no room to resize the frame, skb not writable);
    /// passed unchanged.
    PassError = 20, "pass-error", false;
    /// TC egress: dropped, forwarding is off on the IPMP interface, which `bpf_fib_lookup`
    /// requires (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.forwarding).
    TxFwdDisabled = 21, "tx-fwd-disabled", true;
    /// Member TC egress: a frame released from the member's neighbour queue left with the IPMP
    /// interface's MACs (the kernel re-resolves it through the skb's route); sent again through
    /// the member's now resolved neighbour.
    MemberRequeued = 22, "member-requeued", false;
    /// Member TC egress: such a frame whose next hop could not be found again; dropped.
    MemberRequeueDrop = 23, "member-requeue-drop", true;
    /// Member ingress: echo request (ICMP or ICMPv6) for a data address bound here or this member's test
    /// address, answered with XDP_TX.
    EchoReply = 24, "echo-reply", false;
    /// Member ingress: echo request for another member's test address; passed to this
    /// member's kernel.
    EchoPass = 25, "echo-pass", false;
    /// Member ingress: reply to one of the daemon's probes (its echo id and cookie), timestamped into
    /// `IPMP_PROBES` and passed.
    ProbeReply = 26, "probe-reply", false;
    /// Member ingress: such a reply, timestamped and then dropped (`MEMBER_F_PROBE_RING_ONLY`).
    ProbeRingOnly = 27, "probe-ring-only", true;
    /// Member ingress: an echo reply with the daemon's echo id and probe magic but a wrong cookie (or a
    /// payload sequence that does not mirror the ICMP sequence): forged or corrupted, dropped.
    ProbeForged = 28, "probe-forged", true;
    /// Member ingress: a probe reply that found `IPMP_PROBES` full; passed without a timestamp.
    ProbeRingFull = 29, "probe-ring-full", false;
    /// Member ingress: ARP reply or solicited neighbour advertisement from a target this member probes
    /// with ARP/NDP, timestamped into `IPMP_PROBES` and passed.
    ProbeNeigh = 30, "probe-neigh", false;
    /// Member TC ingress: unicast for a data address of the member's group, handed to the
    /// stack through the IPMP interface.
    RxToIpmp = 31, "rx-ipmp", false;
    /// Member TC ingress: broadcast or multicast IP on the cast member, handed to the stack
    /// through the IPMP interface.
    CastToIpmp = 32, "cast-ipmp", false;
}

impl Reason {
    /// Number of reasons (stride of a slot in `IPMP_STATS`).
    pub const COUNT: u32 = Reason::ALL.len() as u32;
    /// The highest reason.
    pub const LAST: Reason = Reason::CastToIpmp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_dense_and_round_trip() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as u32, i as u32);
            assert_eq!(Reason::from_u32(i as u32), Some(*reason));
        }
        assert_eq!(Reason::from_u32(Reason::COUNT), None);
        assert_eq!(Reason::LAST as u32, Reason::COUNT - 1);
    }
}
