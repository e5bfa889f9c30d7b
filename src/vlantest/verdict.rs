//! The pure part of vlantest: classify each observed frame, keep a tally, and turn it into a
//! PASS/FAIL verdict with the likeliest cause. No I/O, no clock: the shell feeds observations.

use serde::Serialize;

use super::signature::Signature;
use crate::packet::VlanStack;
use crate::time::Timestamp;

/// Most distinct other VLAN ids remembered (for the diagnosis).
const MAX_OTHER_VLANS: usize = 16;

/// What the test expects.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// VLAN id the frames must carry.
    pub vlan: u16,
    /// How many tagged frames make a PASS.
    pub count: u16,
}

/// One frame seen by the listener.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Capture time.
    pub ts: Timestamp,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Tags as delivered to the capture stack, outermost first.
    pub vlans: VlanStack,
    /// Ethertype after the tags.
    pub ethertype: u16,
    /// IP protocol, when IP.
    pub ip_protocol: Option<u8>,
    /// Our signature, when the frame is one of vlantest's sample frames.
    pub signature: Option<Signature>,
}

/// What happened to one frame, relative to the expectation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameClass {
    /// Tagged with the expected VLAN (signed or not).
    Tagged,
    /// A sample frame the sender tagged that arrived with no tag: something stripped it.
    Stripped,
    /// A sample frame that arrived with a different VLAN id than it was sent with.
    Retagged,
    /// Tagged with another VLAN id, sent that way (or not ours).
    OtherVlan,
    /// A sample frame sent untagged that arrived untagged (path check).
    UntaggedAsSent,
    /// Unrelated untagged traffic (counted, not shown).
    Background,
}

/// The running tally.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Tally {
    /// Frames observed.
    pub frames: u64,
    /// Frames tagged with the expected VLAN.
    pub tagged: u64,
    /// Sample frames that lost their tag.
    pub stripped: u64,
    /// Sample frames re-tagged on the way.
    pub retagged: u64,
    /// Frames tagged with other VLAN ids.
    pub other_vlan: u64,
    /// Sample frames sent untagged that arrived untagged.
    pub untagged_as_sent: u64,
    /// Unrelated untagged frames.
    pub background: u64,
    /// Distinct other VLAN ids seen (at most 16 kept).
    pub other_vlan_ids: Vec<u16>,
    /// Sample frames seen (signed by vlantest).
    pub signed: u64,
    /// Sequence numbers seen of the newest test id, as a bit set (first 64).
    #[serde(skip)]
    seqs_seen: u64,
    /// The newest test id seen and its frame count.
    #[serde(skip)]
    test: Option<(u32, u16)>,
}

/// The final word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Enough frames arrived tagged with the expected VLAN.
    Pass,
    /// They did not; the cause and what to check.
    Fail {
        /// Short cause.
        cause: Cause,
        /// What to check or change, in words for the network admin.
        diagnosis: String,
    },
}

/// Likeliest cause of a FAIL.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// No frame of interest arrived at all.
    NothingArrived,
    /// Sample frames arrived without their tag.
    TagsStripped,
    /// Tagged frames arrived, but with other VLAN ids.
    OtherVlan,
    /// Some tagged frames arrived, fewer than asked.
    TooFew,
}

impl Tally {
    /// Classifies `obs` against `exp` and counts it.
    pub fn observe(&mut self, exp: &Expectation, obs: &Observation) -> FrameClass {
        self.frames += 1;
        if let Some(sig) = obs.signature {
            self.signed += 1;
            if self.test.map(|(id, _)| id) != Some(sig.test_id) {
                self.test = Some((sig.test_id, sig.count));
                self.seqs_seen = 0;
            }
            if sig.seq < 64 {
                self.seqs_seen |= 1 << sig.seq;
            }
        }
        let carries_expected = obs.vlans.ids().any(|v| v == exp.vlan);
        let class = match (carries_expected, obs.vlans.is_empty(), obs.signature) {
            (true, _, _) => FrameClass::Tagged,
            (false, true, Some(sig)) if sig.sent_vlan.is_some() => FrameClass::Stripped,
            (false, true, Some(_)) => FrameClass::UntaggedAsSent,
            (false, true, None) => FrameClass::Background,
            (false, false, Some(sig))
                if sig
                    .sent_vlan
                    .is_some_and(|v| !obs.vlans.ids().any(|id| id == v)) =>
            {
                FrameClass::Retagged
            }
            (false, false, _) => FrameClass::OtherVlan,
        };
        match class {
            FrameClass::Tagged => self.tagged += 1,
            FrameClass::Stripped => self.stripped += 1,
            FrameClass::Retagged | FrameClass::OtherVlan => {
                if class == FrameClass::Retagged {
                    self.retagged += 1;
                } else {
                    self.other_vlan += 1;
                }
                for id in obs.vlans.ids() {
                    if !self.other_vlan_ids.contains(&id)
                        && self.other_vlan_ids.len() < MAX_OTHER_VLANS
                    {
                        self.other_vlan_ids.push(id);
                    }
                }
            }
            FrameClass::UntaggedAsSent => self.untagged_as_sent += 1,
            FrameClass::Background => self.background += 1,
        }
        class
    }

    /// True once enough tagged frames arrived (the listener may stop early).
    pub fn is_complete(&self, exp: &Expectation) -> bool {
        self.tagged >= exp.count as u64
    }

    /// Sequence numbers of the newest sample run that never arrived (first 64 only).
    pub fn missing_seqs(&self) -> Vec<u16> {
        match self.test {
            Some((_, count)) => (0..count.min(64))
                .filter(|s| self.seqs_seen & (1 << s) == 0)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The verdict for interface (or file) `iface`.
    pub fn verdict(&self, exp: &Expectation, iface: &str) -> Verdict {
        if self.is_complete(exp) {
            return Verdict::Pass;
        }
        let vlan = exp.vlan;
        let (cause, diagnosis) = if self.stripped > 0 {
            (
                Cause::TagsStripped,
                format!(
                    "{} sample frame(s) sent tagged arrived WITHOUT their 802.1Q tag: the NIC driver, \
                     the hypervisor or the kernel strips VLAN tags before the capture stack. Check \
                     `ethtool -k {iface} | grep vlan`: with rx-vlan-offload on, the kernel should keep \
                     the tag as metadata that libpcap puts back; if tags still vanish, turn it off \
                     (`ethtool -K {iface} rxvlan off`) or update the driver. On VMware the SPAN port \
                     group needs VLAN ID 4095 (trunk) and promiscuous mode; on Hyper-V set the \
                     adapter to trunk mode with VLAN {vlan} allowed.",
                    self.stripped
                ),
            )
        } else if self.retagged > 0 || self.other_vlan > 0 {
            (
                Cause::OtherVlan,
                format!(
                    "tagged frames arrived, but with VLAN id(s) {:?}, not {vlan}: check the SPAN \
                     session's source VLANs (`show monitor session`), the trunk's allowed VLANs \
                     (`switchport trunk allowed vlan`) and that the sender uses VLAN {vlan}.",
                    self.other_vlan_ids
                ),
            )
        } else if self.tagged > 0 {
            (
                Cause::TooFew,
                format!(
                    "only {} of {} frames arrived tagged with VLAN {vlan} (missing sample frames: \
                     {:?}): the path loses frames or the listener started late; run again with a \
                     longer --timeout.",
                    self.tagged,
                    exp.count,
                    self.missing_seqs()
                ),
            )
        } else if self.untagged_as_sent > 0 {
            (
                Cause::NothingArrived,
                format!(
                    "untagged sample frames arrive but no frame tagged with VLAN {vlan} did: the \
                     path works; send tagged frames (`silentmon vlantest send --vlan {vlan}`) to \
                     qualify tag delivery."
                ),
            )
        } else {
            (
                Cause::NothingArrived,
                format!(
                    "no frame tagged with VLAN {vlan} and no sample frame arrived on {iface}: check \
                     that {iface} is the SPAN destination port (`show monitor session`), that its \
                     link is up (`ip link show {iface}`), that the sender sent to this NIC's MAC, \
                     and that the sender's frames leave on the right port."
                ),
            )
        };
        Verdict::Fail { cause, diagnosis }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::VlanTag;

    const EXP: Expectation = Expectation { vlan: 85, count: 5 };

    fn obs(vlans: &[u16], sig: Option<(u16, Option<u16>)>) -> Observation {
        let mut stack = VlanStack::new();
        for &v in vlans {
            stack.push(VlanTag {
                tpid: 0x8100,
                vid: v,
                pcp: 0,
                dei: false,
            });
        }
        Observation {
            ts: Timestamp::ZERO,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlans: stack,
            ethertype: 0x0800,
            ip_protocol: Some(17),
            signature: sig.map(|(seq, sent_vlan)| Signature {
                test_id: 7,
                seq,
                count: 5,
                sent_vlan,
            }),
        }
    }

    fn run(frames: &[Observation]) -> (Tally, Verdict) {
        let mut t = Tally::default();
        for f in frames {
            t.observe(&EXP, f);
        }
        let v = t.verdict(&EXP, "eth1");
        (t, v)
    }

    fn cause(v: &Verdict) -> Option<Cause> {
        match v {
            Verdict::Pass => None,
            Verdict::Fail { cause, .. } => Some(*cause),
        }
    }

    #[test]
    fn pass_with_five_tagged_amid_background() {
        let mut frames: Vec<_> = (0..5).map(|s| obs(&[85], Some((s, Some(85))))).collect();
        frames.insert(2, obs(&[], None));
        let (t, v) = run(&frames);
        assert_eq!(v, Verdict::Pass);
        assert_eq!((t.tagged, t.background), (5, 1));
        assert!(t.missing_seqs().is_empty());
    }

    #[test]
    fn qinq_inner_85_counts() {
        let frames: Vec<_> = (0..5)
            .map(|s| obs(&[100, 85], Some((s, Some(85)))))
            .collect();
        assert_eq!(run(&frames).1, Verdict::Pass);
    }

    #[test]
    fn stripped_tags() {
        let frames: Vec<_> = (0..5).map(|s| obs(&[], Some((s, Some(85))))).collect();
        let (t, v) = run(&frames);
        assert_eq!(cause(&v), Some(Cause::TagsStripped));
        assert_eq!(t.stripped, 5);
        let Verdict::Fail { diagnosis, .. } = v else {
            unreachable!()
        };
        assert!(diagnosis.contains("ethtool -k eth1"));
    }

    #[test]
    fn other_vlan_and_retagged() {
        let sent86: Vec<_> = (0..5).map(|s| obs(&[86], Some((s, Some(86))))).collect();
        let (t, v) = run(&sent86);
        assert_eq!(cause(&v), Some(Cause::OtherVlan));
        assert_eq!((t.other_vlan, t.retagged), (5, 0));
        assert_eq!(t.other_vlan_ids, vec![86]);
        let retagged: Vec<_> = (0..5).map(|s| obs(&[99], Some((s, Some(85))))).collect();
        let (t, v) = run(&retagged);
        assert_eq!(cause(&v), Some(Cause::OtherVlan));
        assert_eq!(t.retagged, 5);
    }

    #[test]
    fn nothing_and_too_few() {
        assert_eq!(cause(&run(&[]).1), Some(Cause::NothingArrived));
        assert_eq!(
            cause(&run(&[obs(&[], None)]).1),
            Some(Cause::NothingArrived)
        );
        let some: Vec<_> = [0, 1, 3]
            .iter()
            .map(|&s| obs(&[85], Some((s, Some(85)))))
            .collect();
        let (t, v) = run(&some);
        assert_eq!(cause(&v), Some(Cause::TooFew));
        assert_eq!(t.missing_seqs(), vec![2, 4]);
        let untagged: Vec<_> = (0..5).map(|s| obs(&[], Some((s, None)))).collect();
        let (t, v) = run(&untagged);
        assert_eq!(cause(&v), Some(Cause::NothingArrived));
        assert_eq!(t.untagged_as_sent, 5);
    }
}
