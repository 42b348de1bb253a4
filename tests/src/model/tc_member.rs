//! `ipmp_tc_member` on a member's egress: an ARP request whose sender is a data address bound
//! to another member (or to none) leaves with the member's `arp_src` as sender instead; a
//! unicast IP frame whose source MAC is not the member's (released from the member's
//! neighbour queue with the IPMP interface's MACs) is sent again through the member's
//! neighbour for the next hop the group's routes give, or dropped when there is none;
//! everything else passes.

use ipmp_common::{
    AddrKey, Reason, STATS_SLOT_UNKNOWN,
    packet::{ARPHRD_ETHER, ARPOP_REQUEST, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6},
};

use super::{
    Bytes, Fib, Outcome, Prediction, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, World, be16,
    flow::flow_key, is_group_mac, words_to_bytes,
};

/// The prediction for a frame member `ifindex` sends.
pub fn predict(w: &World, ifindex: u32, frame: &[u8]) -> Prediction {
    if super::skb_test_run_refuses(frame) {
        return Prediction::Refused;
    }
    let out = |verdict, output: Vec<u8>, slot, reason| Outcome {
        verdict,
        output,
        count: Some((slot, reason)),
        event: None,
    };
    let Some(member) = w.members.get(&ifindex) else {
        return Prediction::one(out(
            TC_ACT_OK,
            frame.to_vec(),
            STATS_SLOT_UNKNOWN,
            Reason::NotMember,
        ));
    };
    let slot = member.stats_slot;
    let pass = out(TC_ACT_OK, frame.to_vec(), slot, Reason::MemberTxPass);
    let ethertype = be16(frame, 12);
    if (ethertype == ETH_P_IP || ethertype == ETH_P_IPV6)
        && !is_group_mac(frame[0])
        && frame[6..12] != member.mac
    {
        let drop = out(TC_ACT_SHOT, frame.to_vec(), slot, Reason::MemberRequeueDrop);
        let Ok(key) = flow_key(Bytes(frame), ethertype == ETH_P_IPV6) else {
            return Prediction::one(drop);
        };
        let sent = out(
            TC_ACT_REDIRECT,
            frame.to_vec(),
            slot,
            Reason::MemberRequeued,
        );
        let dst = words_to_bytes(key.dst);
        let fib = if key.ip_version == 6 && dst[0] == 0xfe && dst[1] & 0xc0 == 0x80 {
            Fib::Found
        } else {
            w.routes.lookup(member.group_ifindex, &key)
        };
        return match fib {
            Fib::Found => Prediction::one(sent),
            Fib::NoRoute => Prediction::one(drop),
            Fib::Unknown => Prediction::OneOf(vec![sent, drop]),
        };
    }
    if ethertype != ETH_P_ARP {
        return Prediction::one(pass);
    }
    let Some(arp) = Bytes(frame).get::<28>(ETH_HLEN) else {
        return Prediction::one(pass);
    };
    let request = be16(&arp, 0) == ARPHRD_ETHER
        && be16(&arp, 2) == ETH_P_IP
        && arp[4] == 6
        && arp[5] == 4
        && be16(&arp, 6) == ARPOP_REQUEST;
    if !request {
        return Prediction::one(pass);
    }
    let spa = [arp[14], arp[15], arp[16], arp[17]];
    match w.addrs.get(&AddrKey::v4(spa)) {
        Some(a) if a.bound_ifindex != ifindex => {
            let mut output = frame.to_vec();
            output[ETH_HLEN + 14..ETH_HLEN + 18].copy_from_slice(&member.arp_src.to_ne_bytes());
            Prediction::one(out(TC_ACT_OK, output, slot, Reason::ArpSrcRewrite))
        }
        _ => Prediction::one(pass),
    }
}
