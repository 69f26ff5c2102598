//! CPUID: what the host's KVM supports, narrowed to what a Verdant vCPU offers.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX: MONITOR/MWAIT (we do not emulate them; guests would spin in them).
const LEAF1_ECX_MONITOR: u32 = 1 << 3;
/// Leaf 1 ECX: VMX (no nested virtualisation).
const LEAF1_ECX_VMX: u32 = 1 << 5;
/// Leaf 1 ECX: the "running under a hypervisor" bit.
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: HTT, "more than one logical processor per package".
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Leaf 0x8000_0001 ECX: SVM (no nested virtualisation).
const EXT_LEAF1_ECX_SVM: u32 = 1 << 2;

/// Narrows `entries` (from `KVM_GET_SUPPORTED_CPUID`) for vCPU `vcpu_id` of `vcpu_count`:
/// marks the hypervisor, gives each vCPU its APIC id, describes the topology as one package of
/// `vcpu_count` logical processors, and hides what we do not emulate (MONITOR/MWAIT, nested
/// virtualisation, the performance-monitoring unit).
pub fn filter(entries: &mut [kvm_cpuid_entry2], vcpu_id: u8, vcpu_count: u8) {
    for entry in entries.iter_mut() {
        match entry.function {
            0x1 => {
                entry.ecx &= !(LEAF1_ECX_MONITOR | LEAF1_ECX_VMX);
                entry.ecx |= LEAF1_ECX_HYPERVISOR;
                // EBX: [31:24] initial APIC id, [23:16] logical processors per package,
                // [15:8] CLFLUSH line size in quadwords (8 = 64 bytes).
                entry.ebx = (u32::from(vcpu_id) << 24) | (u32::from(vcpu_count) << 16) | (8 << 8);
                if vcpu_count > 1 {
                    entry.edx |= LEAF1_EDX_HTT;
                } else {
                    entry.edx &= !LEAF1_EDX_HTT;
                }
            }
            0x5 => {
                // MONITOR/MWAIT parameters: nothing to describe.
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            0xa => {
                // No architectural performance monitoring.
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            0xb | 0x1f => {
                // Extended topology: EDX is the x2APIC id on every subleaf.
                entry.edx = u32::from(vcpu_id);
            }
            0x8000_0001 => entry.ecx &= !EXT_LEAF1_ECX_SVM,
            _ => {}
        }
    }
}

/// A CPUID entry with subleaf 0, for tests.
#[cfg(test)]
pub(crate) fn leaf(function: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        eax,
        ebx,
        ecx,
        edx,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(entries: &[kvm_cpuid_entry2], function: u32) -> kvm_cpuid_entry2 {
        *entries.iter().find(|e| e.function == function).unwrap()
    }

    fn host() -> Vec<kvm_cpuid_entry2> {
        vec![
            leaf(0x0, 0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            // MONITOR (bit 3), VMX (bit 5) and SSE3 (bit 0) offered; HTT off.
            leaf(0x1, 0x000306a9, 0x0010_0800, 0x0000_0029, 0x078b_fbff),
            leaf(0x5, 0x40, 0x40, 0x3, 0x1120),
            leaf(0xa, 0x0730_0403, 0, 0, 0x603),
            leaf(0xb, 1, 2, 0x100, 7),
            leaf(0x8000_0001, 0, 0, 0x0000_0025, 0x2c10_0800),
        ]
    }

    #[test]
    fn leaf_1_names_the_vcpu_and_the_hypervisor() {
        let mut entries = host();
        filter(&mut entries, 3, 4);
        let l1 = find(&entries, 0x1);
        assert_eq!(l1.ebx >> 24, 3, "initial APIC id");
        assert_eq!((l1.ebx >> 16) & 0xff, 4, "logical processors");
        assert_ne!(l1.ecx & (1 << 31), 0, "hypervisor bit");
        assert_eq!(l1.ecx & (1 << 3), 0, "MONITOR hidden");
        assert_eq!(l1.ecx & (1 << 5), 0, "VMX hidden");
        assert_ne!(l1.ecx & 1, 0, "SSE3 kept when the host offers it");
        assert_ne!(l1.edx & (1 << 28), 0, "HTT with 4 vCPUs");
        assert_eq!(l1.eax, 0x000306a9, "family/model untouched");
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let mut entries = host();
        filter(&mut entries, 0, 1);
        assert_eq!(find(&entries, 0x1).edx & (1 << 28), 0);
    }

    #[test]
    fn pmu_mwait_and_svm_are_hidden_and_topology_ids_set() {
        let mut entries = host();
        filter(&mut entries, 5, 8);
        let pmu = find(&entries, 0xa);
        assert_eq!((pmu.eax, pmu.edx), (0, 0));
        assert_eq!(find(&entries, 0x5).ecx, 0);
        assert_eq!(find(&entries, 0xb).edx, 5);
        assert_eq!(find(&entries, 0x8000_0001).ecx & (1 << 2), 0);
        assert_eq!(find(&entries, 0x0), host()[0], "vendor leaf untouched");
    }
}
