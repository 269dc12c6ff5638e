//! Pool operations: the level, joins, leaves and host reboots (done or asked about), and the
//! VM lifecycle with its CPU checks.
//!
//! # The pool level
//!
//! Per guest type: the intersection of the members' **default** featuresets, then the
//! pool-OR (`|`, [`SIMPLE_OR`]) features any member offers by default, as far as every
//! member's **max** set has them, then dependency-closed. The `|` bits are Xen's
//! "visible if any host has it" features (MD_CLEAR, FB_CLEAR, RFDS_CLEAR, VERW_CLEAR,
//! NO_LMSL, FS_GS_NS): a guest must learn it may need the VERW flush, or must not rely on a
//! behaviour, if any host it may land on needs that. Keeping them within every member's max
//! means the level is still accepted by every member (and by the core's
//! `SystemPolicies::domain_policy`), so the same subset check governs everything.
//!
//! # VM lifecycle
//!
//! | operation | CPU rule |
//! |---|---|
//! | start | the VM gets the pool level and the pool's vendor; placement checks the host anyway |
//! | reboot | a running VM picks up the current pool level; force records are cleared |
//! | shutdown | featureset, vendor and force records are dropped |
//! | suspend | keeps everything |
//! | resume, migrate, evacuate, cross-pool move of a running or suspended VM | [`check`] against the destination's max set |
//! | move or copy of a halted VM or template to another pool | no CPU check; it starts at that pool's level |
//! | import of a VM from an older toolstack | without a featureset: the landing host's max set (Dundee); with one: zero-extended, then checked |
//!
//! `force` lets one move through whatever features are missing (never across vendors) and
//! records exactly those features on the VM, with what it uses beyond its pool's level; the
//! records stay until the VM restarts at the pool level. Every later move is checked in full
//! again, as XAPI does.

use std::collections::BTreeMap;

use xen_levelling::feature::{NR_WORDS, SIMPLE_OR};
use xen_levelling::featureset::FeaturesetError;
use xen_levelling::{Feature, Featureset, Vendor};

use crate::check::{self, Cause, HostCheck, Link, VmCpu, Which, accepting, check_pool};
use crate::error::{Error, usage};
use crate::model::{ForceRecord, GuestType, Host, Origin, Pool, PowerState, Vm, valid_name};
use crate::report::{
    ChangeReport, EvacuationReport, Explanation, Features, ForceOut, HostCause, LevelChange,
    LevelFeature, LevelReport, LostDestination, MemberLevel, Move, Refusal, SetChange, VmImpact,
    VmReport, names,
};

/// The pool level of `hosts` for `guest` (see the [module documentation](self)); `None` for
/// no hosts.
pub fn level_of(hosts: &[Host], guest: GuestType) -> Option<Featureset> {
    if hosts.is_empty() {
        return None;
    }
    let and = hosts
        .iter()
        .fold(Featureset::FULL, |acc, h| acc & h.default_for(guest));
    let any = hosts
        .iter()
        .fold(Featureset::EMPTY, |acc, h| acc | h.default_for(guest));
    let every_max = hosts
        .iter()
        .fold(Featureset::FULL, |acc, h| acc & h.max_for(guest).closed());
    Some((and | (any & SIMPLE_OR & every_max)).closed())
}

/// A change to a pool's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A host joins.
    Join(Box<Host>),
    /// The named host leaves.
    Leave(String),
    /// A host reboots and reports these featuresets (same name as the member it replaces).
    Reboot(Box<Host>),
}

impl Change {
    fn verb(&self) -> &'static str {
        match self {
            Change::Join(_) => "join",
            Change::Leave(_) => "leave",
            Change::Reboot(_) => "reboot",
        }
    }

    fn host_name(&self) -> &str {
        match self {
            Change::Join(h) | Change::Reboot(h) => &h.name,
            Change::Leave(name) => name,
        }
    }
}

fn refused(
    operation: &str,
    subject: &str,
    reason: impl Into<String>,
    checks: Vec<HostCheck>,
    accepting: Option<Vec<String>>,
    details: Vec<String>,
) -> Error {
    Error::Refused(Box::new(Refusal {
        operation: operation.to_string(),
        subject: subject.to_string(),
        reason: reason.into(),
        checks,
        accepting,
        details,
    }))
}

impl Pool {
    /// The pool level for `guest` (see the [module documentation](self)).
    pub fn level(&self, guest: GuestType) -> Option<Featureset> {
        level_of(&self.hosts, guest)
    }

    /// The host called `name`, or a usage error naming the pool's hosts.
    pub fn host(&self, name: &str) -> Result<&Host, Error> {
        self.find_host(name).ok_or_else(|| {
            let known: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            usage(format!(
                "pool {} has no host `{name}` (hosts: {})",
                self.name,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The VM called `name`, or a usage error.
    pub fn vm(&self, name: &str) -> Result<&Vm, Error> {
        self.find_vm(name)
            .ok_or_else(|| usage(format!("pool {} has no VM `{name}`", self.name)))
    }

    fn vm_mut(&mut self, name: &str) -> Result<&mut Vm, Error> {
        let pool = self.name.clone();
        self.find_vm_mut(name)
            .ok_or_else(|| usage(format!("pool {pool} has no VM `{name}`")))
    }

    /// The pool level per guest type with, per member, what the pool costs it and what it
    /// alone holds back.
    pub fn level_report(&self) -> Vec<LevelReport> {
        GuestType::ALL
            .iter()
            .map(|&guest| {
                let level = self.level(guest);
                let and = self
                    .hosts
                    .iter()
                    .fold(Featureset::FULL, |acc, h| acc & h.default_for(guest));
                let members = self
                    .hosts
                    .iter()
                    .map(|h| {
                        let others = self
                            .hosts
                            .iter()
                            .filter(|o| o.name != h.name)
                            .fold(Featureset::FULL, |acc, o| acc & o.default_for(guest));
                        let holds_back = if self.hosts.len() > 1 {
                            others.closed()
                                - h.default_for(guest).closed()
                                - level.unwrap_or_default()
                        } else {
                            Featureset::EMPTY
                        };
                        MemberLevel {
                            host: h.name.clone(),
                            gives_up: names(&(h.default_for(guest) - level.unwrap_or_default())),
                            holds_back: names(&holds_back),
                        }
                    })
                    .collect();
                LevelReport {
                    guest,
                    level: level.as_ref().map(Features::from),
                    accumulated: names(&(level.unwrap_or_default() - and)),
                    members,
                }
            })
            .collect()
    }

    /// The effect of `change`, without making it (what-if). Unknown or duplicate host names
    /// are usage errors; anything that would refuse the change is listed in
    /// [`ChangeReport::blockers`].
    pub fn plan(&self, change: &Change) -> Result<ChangeReport, Error> {
        let mut blockers = Vec::new();
        let mut host_sets = Vec::new();
        let after = match change {
            Change::Join(host) => self.after_join(host, &mut blockers)?,
            Change::Leave(host) => self.after_leave(host, &mut blockers)?,
            Change::Reboot(new) => {
                let old = self.host(&new.name)?;
                host_sets = set_changes(old, new);
                self.after_reboot(new, &mut blockers)?
            }
        };
        let mut report = ChangeReport {
            pool: self.name.clone(),
            change: change.verb().to_string(),
            host: change.host_name().to_string(),
            applied: false,
            blockers,
            host_sets,
            levels: Vec::new(),
            vms: Vec::new(),
        };
        // A mixed-vendor "pool" has no meaningful level; say only what blocks it.
        let mixed = after.windows(2).any(|w| w[0].vendor != w[1].vendor);
        if !mixed {
            report.levels = GuestType::ALL
                .iter()
                .map(|&guest| level_change(&self.hosts, &after, guest))
                .collect();
            report.vms = self.impacts(&after);
        }
        Ok(report)
    }

    /// The hosts once `host` joined; a vendor other than the pool's blocks it.
    fn after_join(&self, host: &Host, blockers: &mut Vec<String>) -> Result<Vec<Host>, Error> {
        if self.find_host(&host.name).is_some() {
            return Err(usage(format!(
                "pool {} already has a host `{}` (use --name to pick another)",
                self.name, host.name
            )));
        }
        if let Some(vendor) = self.vendor()
            && vendor != host.vendor
        {
            blockers.push(format!(
                "CPUs differ: {} is {}, pool {} is {} (a pool has one vendor)",
                host.name, host.vendor, self.name, vendor
            ));
        }
        let mut after = self.hosts.clone();
        after.push(host.clone());
        Ok(after)
    }

    /// The hosts once `host` left; VMs running on it block it.
    fn after_leave(&self, host: &str, blockers: &mut Vec<String>) -> Result<Vec<Host>, Error> {
        self.host(host)?;
        blockers.extend(self.residents_in_the_way(host));
        Ok(self
            .hosts
            .iter()
            .filter(|h| h.name != host)
            .cloned()
            .collect())
    }

    /// The hosts once `new` rebooted in place of its namesake; another vendor, or VMs running
    /// on it, block it.
    fn after_reboot(&self, new: &Host, blockers: &mut Vec<String>) -> Result<Vec<Host>, Error> {
        let old = self.host(&new.name)?;
        if new.vendor != old.vendor {
            blockers.push(format!(
                "{} now reports a {} CPU, the pool is {}",
                new.name, new.vendor, old.vendor
            ));
        }
        blockers.extend(self.residents_in_the_way(&new.name));
        Ok(self
            .hosts
            .iter()
            .map(|h| if h.name == new.name { new } else { h })
            .cloned()
            .collect())
    }

    /// A blocker for each VM running on `host`.
    fn residents_in_the_way(&self, host: &str) -> Vec<String> {
        self.resident(host)
            .map(|vm| {
                format!(
                    "VM {} is running on {host} (evacuate the host first)",
                    vm.name
                )
            })
            .collect()
    }

    /// Make `change`, or refuse it (vendor, VMs in the way) without changing anything.
    pub fn apply(&mut self, change: Change) -> Result<ChangeReport, Error> {
        let mut report = self.plan(&change)?;
        if !report.blockers.is_empty() {
            return Err(refused(
                change.verb(),
                change.host_name(),
                report.blockers[0].clone(),
                Vec::new(),
                None,
                report.blockers[1..].to_vec(),
            ));
        }
        match change {
            Change::Join(host) => self.hosts.push(*host),
            Change::Leave(name) => self.hosts.retain(|h| h.name != name),
            Change::Reboot(new) => {
                if let Some(slot) = self.hosts.iter_mut().find(|h| h.name == new.name) {
                    *slot = *new;
                }
            }
        }
        report.applied = true;
        Ok(report)
    }

    /// How moving from the current members to `after` affects each running or suspended VM.
    fn impacts(&self, after: &[Host]) -> Vec<VmImpact> {
        let mut out = Vec::new();
        for vm in &self.vms {
            let Some(cpu) = VmCpu::of(vm) else { continue };
            let before: BTreeMap<String, HostCheck> = self
                .hosts
                .iter()
                .map(|h| (h.name.clone(), check::check(&self.name, &vm.name, &cpu, h)))
                .collect();
            let now: BTreeMap<String, HostCheck> = after
                .iter()
                .map(|h| (h.name.clone(), check::check(&self.name, &vm.name, &cpu, h)))
                .collect();
            let mut lost_destinations = Vec::new();
            for (host, c) in &before {
                if !c.accepted {
                    continue;
                }
                match now.get(host) {
                    None => lost_destinations.push(LostDestination {
                        host: host.clone(),
                        reason: "leaves the pool".to_string(),
                        missing: Vec::new(),
                    }),
                    Some(n) if !n.accepted => lost_destinations.push(LostDestination {
                        host: host.clone(),
                        reason: n.summary(),
                        missing: n.missing.clone(),
                    }),
                    Some(_) => {}
                }
            }
            let new_hosts_refusing: Vec<LostDestination> = now
                .iter()
                .filter(|(h, c)| !c.accepted && !before.contains_key(*h))
                .map(|(h, c)| LostDestination {
                    host: h.clone(),
                    reason: c.summary(),
                    missing: c.missing.clone(),
                })
                .collect();
            let gained_destinations: Vec<String> = now
                .iter()
                .filter(|(h, c)| c.accepted && !before.get(*h).is_some_and(|b| b.accepted))
                .map(|(h, _)| h.clone())
                .collect();
            let old_level = self.level(vm.guest).unwrap_or_default();
            let new_level = level_of(after, vm.guest).unwrap_or_default();
            let loses_on_reboot = cpu.featureset & (old_level - new_level);
            let gains_on_reboot = (new_level - old_level) - cpu.featureset;
            let own = vm.host.as_deref();
            let elsewhere = |m: &BTreeMap<String, HostCheck>| {
                m.iter()
                    .filter(|(h, c)| c.accepted && Some(h.as_str()) != own)
                    .count()
            };
            let stranded =
                vm.power == PowerState::Running && elsewhere(&before) > 0 && elsewhere(&now) == 0;
            if lost_destinations.is_empty()
                && gained_destinations.is_empty()
                && new_hosts_refusing.is_empty()
                && loses_on_reboot.is_empty()
                && gains_on_reboot.is_empty()
            {
                continue;
            }
            out.push(VmImpact {
                vm: vm.name.clone(),
                guest: vm.guest,
                power: vm.power,
                host: vm.host.clone(),
                lost_destinations,
                gained_destinations,
                new_hosts_refusing,
                loses_on_reboot: names(&loses_on_reboot),
                gains_on_reboot: names(&gains_on_reboot),
                stranded,
            });
        }
        out
    }

    /// Create a halted VM (or template).
    pub fn create_vm(
        &mut self,
        name: &str,
        guest: GuestType,
        template: bool,
    ) -> Result<VmReport, Error> {
        if !valid_name(name) {
            return Err(usage(format!(
                "`{name}` is not a valid VM name (letters, digits, `.`, `_`, `-`)"
            )));
        }
        if self.find_vm(name).is_some() {
            return Err(usage(format!(
                "pool {} already has a VM `{name}`",
                self.name
            )));
        }
        self.vms.push(Vm::new(name, guest, template));
        Ok(self.vm_report(name, "create"))
    }

    /// Remove a VM or template: a halted one always, a running or suspended one only with
    /// `force` (it is destroyed where it runs). Returns what was done, in one line.
    pub fn destroy_vm(&mut self, name: &str, force: bool) -> Result<String, Error> {
        let vm = self.vm(name)?;
        let what = if vm.template { "template" } else { "VM" };
        let state = match (&vm.host, vm.power) {
            (Some(h), PowerState::Running) => format!("running on {h}"),
            (_, power) => power.to_string(),
        };
        if vm.is_live() && !force {
            return Err(refused(
                "destroy",
                name,
                format!("{what} is {state}"),
                Vec::new(),
                None,
                vec!["shut it down first (vm shutdown), or destroy it with --force".to_string()],
            ));
        }
        let live = vm.is_live();
        self.vms.retain(|v| v.name != name);
        Ok(format!(
            "destroyed {what} {name} of pool {}{}",
            self.name,
            if live {
                format!(" (it was {state}; forced)")
            } else {
                String::new()
            }
        ))
    }

    /// Start a halted VM at the pool level, on `on` or the least loaded host.
    pub fn start_vm(&mut self, name: &str, on: Option<&str>) -> Result<VmReport, Error> {
        let vm = self.vm(name)?;
        if vm.template {
            return Err(refused(
                "start",
                name,
                "it is a template; copy it to a VM first (vm copy --instantiate)",
                Vec::new(),
                None,
                Vec::new(),
            ));
        }
        if vm.power != PowerState::Halted {
            return Err(usage(format!(
                "VM {name} is {}; only a halted VM starts (use vm reboot or vm resume)",
                vm.power
            )));
        }
        let (Some(vendor), Some(level)) = (self.vendor(), self.level(vm.guest)) else {
            return Err(refused(
                "start",
                name,
                format!("pool {} has no hosts", self.name),
                Vec::new(),
                None,
                Vec::new(),
            ));
        };
        let cpu = VmCpu::starting(vm.guest, vendor, level);
        let placed = self.place(
            "start",
            name,
            &cpu,
            Placement {
                to: on,
                ..Placement::default()
            },
        )?;
        let pool = self.name.clone();
        let vm = self.vm_mut(name)?;
        vm.power = PowerState::Running;
        vm.host = Some(placed.host);
        vm.vendor = Some(vendor);
        vm.featureset = Some(level);
        vm.origin = Some(Origin::PoolLevel { pool });
        vm.forced.clear();
        let mut report = self.vm_report(name, "start");
        report.check = Some(placed.check);
        Ok(report)
    }

    /// Shut a running or suspended VM down: it forgets its featureset.
    pub fn shutdown_vm(&mut self, name: &str) -> Result<VmReport, Error> {
        let vm = self.vm_mut(name)?;
        if vm.power == PowerState::Halted {
            return Err(usage(format!("VM {name} is already halted")));
        }
        vm.power = PowerState::Halted;
        vm.host = None;
        vm.clear_cpu();
        Ok(self.vm_report(name, "shutdown"))
    }

    /// Reboot a running VM: it picks up the current pool level (and loses its force records).
    pub fn reboot_vm(&mut self, name: &str) -> Result<VmReport, Error> {
        let vm = self.vm(name)?;
        if vm.power != PowerState::Running {
            return Err(usage(format!(
                "VM {name} is {}; only a running VM reboots",
                vm.power
            )));
        }
        let (Some(vendor), Some(level)) = (self.vendor(), self.level(vm.guest)) else {
            return Err(usage(format!("pool {} has no hosts", self.name)));
        };
        let old = vm.featureset.unwrap_or_default();
        let host = vm.host.clone().unwrap_or_default();
        let cpu = VmCpu::starting(vm.guest, vendor, level);
        // The level is within every member's max by construction; check anyway.
        let placed = self.place(
            "reboot",
            name,
            &cpu,
            Placement {
                to: Some(&host),
                ..Placement::default()
            },
        )?;
        let pool = self.name.clone();
        let vm = self.vm_mut(name)?;
        vm.vendor = Some(vendor);
        vm.featureset = Some(level);
        vm.origin = Some(Origin::PoolLevel { pool });
        vm.forced.clear();
        let mut report = self.vm_report(name, "reboot");
        report.check = Some(placed.check);
        report.lost = names(&(old - level));
        report.gained = names(&(level - old));
        report.notes.push(
            "a reboot picks up the current pool level (XenServer Dundee needed a full shutdown)"
                .to_string(),
        );
        Ok(report)
    }

    /// Suspend a running VM: it keeps its featureset, vendor and force records.
    pub fn suspend_vm(&mut self, name: &str) -> Result<VmReport, Error> {
        let vm = self.vm_mut(name)?;
        if vm.power != PowerState::Running {
            return Err(usage(format!(
                "VM {name} is {}; only a running VM suspends",
                vm.power
            )));
        }
        vm.power = PowerState::Suspended;
        Ok(self.vm_report(name, "suspend"))
    }

    /// Resume a suspended VM on `on`, or on the host it was suspended on, or on any host
    /// that accepts it; checked like a migration.
    pub fn resume_vm(
        &mut self,
        name: &str,
        on: Option<&str>,
        force: bool,
    ) -> Result<VmReport, Error> {
        let vm = self.vm(name)?;
        if vm.power != PowerState::Suspended {
            return Err(usage(format!(
                "VM {name} is {}; only a suspended VM resumes",
                vm.power
            )));
        }
        let cpu = live_cpu(vm)?;
        let prefer = vm.host.clone();
        let placed = self.place(
            "resume",
            name,
            &cpu,
            Placement {
                to: on,
                prefer: prefer.as_deref(),
                exclude: None,
                force,
            },
        )?;
        let level = self.level(cpu.guest);
        let vm = self.vm_mut(name)?;
        vm.power = PowerState::Running;
        vm.host = Some(placed.host.clone());
        record_force(vm, "resume", &placed.host, &placed.check, level);
        let mut report = self.vm_report(name, "resume");
        report.forced = names(&placed.check.missing_set);
        report.check = Some(placed.check);
        Ok(report)
    }

    /// Live-migrate a running VM within the pool, to `to` or the least loaded host that
    /// accepts it.
    pub fn migrate_vm(
        &mut self,
        name: &str,
        to: Option<&str>,
        force: bool,
    ) -> Result<VmReport, Error> {
        let vm = self.vm(name)?;
        match vm.power {
            PowerState::Running => {}
            PowerState::Suspended => {
                return Err(usage(format!(
                    "VM {name} is suspended and on no host; use vm resume --on HOST"
                )));
            }
            PowerState::Halted => {
                return Err(usage(format!(
                    "VM {name} is halted; it runs wherever it starts (vm start --on HOST)"
                )));
            }
        }
        let current = vm.host.clone();
        if to.is_some() && to == current.as_deref() {
            return Err(usage(format!(
                "VM {name} already runs on {}",
                to.unwrap_or_default()
            )));
        }
        let cpu = live_cpu(vm)?;
        let placed = self.place(
            "migrate",
            name,
            &cpu,
            Placement {
                to,
                prefer: None,
                exclude: current.as_deref(),
                force,
            },
        )?;
        let level = self.level(cpu.guest);
        let vm = self.vm_mut(name)?;
        vm.host = Some(placed.host.clone());
        record_force(vm, "migrate", &placed.host, &placed.check, level);
        let mut report = self.vm_report(name, "migrate");
        report.forced = names(&placed.check.missing_set);
        report.check = Some(placed.check);
        Ok(report)
    }

    /// Take in a running (or suspended) VM from an older toolstack.
    ///
    /// Without a featureset it gets the max featureset of the host it lands on (XenServer
    /// Dundee's rule: give it everything that host offers). With one, the text is read as a
    /// XAPI string or name list; a shorter, older string is zero-extended; bits in words this
    /// build does not know refuse the import (never truncated), and the set is checked against
    /// the landing host like a migration.
    pub fn import_vm(&mut self, req: &ImportRequest) -> Result<VmReport, Error> {
        if !valid_name(&req.name) {
            return Err(usage(format!("`{}` is not a valid VM name", req.name)));
        }
        if self.find_vm(&req.name).is_some() {
            return Err(usage(format!(
                "pool {} already has a VM `{}`",
                self.name, req.name
            )));
        }
        let Some(pool_vendor) = self.vendor() else {
            return Err(refused_import(
                &req.name,
                format!("pool {} has no hosts", self.name),
            ));
        };
        let vendor = req.vendor.unwrap_or(pool_vendor);
        let Landing {
            featureset,
            origin,
            host: host_name,
            check,
        } = match &req.featureset {
            None => self.land_at_host_max(req, vendor)?,
            Some(text) => self.land_recorded(req, vendor, text)?,
        };
        let mut vm = Vm::new(&req.name, req.guest, false);
        vm.power = if req.suspended {
            PowerState::Suspended
        } else {
            PowerState::Running
        };
        vm.host = Some(host_name.clone());
        vm.vendor = Some(vendor);
        vm.featureset = Some(featureset);
        vm.origin = Some(origin);
        let level = self.level(vm.guest);
        record_force(&mut vm, "import", &host_name, &check, level);
        self.vms.push(vm);
        let mut report = self.vm_report(&req.name, "import");
        report.forced = names(&check.missing_set);
        report.check = Some(check);
        report
            .notes
            .push("a reboot replaces the imported featureset with the pool level".to_string());
        Ok(report)
    }

    /// An imported VM without a featureset: the max of the host it lands on (the named one,
    /// or the least loaded), refused only for another vendor.
    fn land_at_host_max(&self, req: &ImportRequest, vendor: Vendor) -> Result<Landing, Error> {
        let host = match req.host.as_deref() {
            Some(h) => self.host(h)?,
            None => self.least_loaded(None),
        };
        let featureset = host.max_for(req.guest);
        let cpu = VmCpu::starting(req.guest, vendor, featureset);
        let check = check::check(&self.name, &req.name, &cpu, host);
        if check.vendor_mismatch.is_some() {
            return Err(refused(
                "import",
                &req.name,
                check.summary(),
                vec![check],
                None,
                Vec::new(),
            ));
        }
        Ok(Landing {
            featureset,
            origin: Origin::LandingHost {
                host: host.name.clone(),
            },
            host: host.name.clone(),
            check,
        })
    }

    /// An imported VM with the featureset it recorded (`text`), placed like a migration.
    fn land_recorded(
        &self,
        req: &ImportRequest,
        vendor: Vendor,
        text: &str,
    ) -> Result<Landing, Error> {
        let parsed = match crate::input::parse_featureset(text) {
            Ok(p) => p,
            Err(FeaturesetError::UnknownWord { word, value }) => {
                return Err(refused_import(
                    &req.name,
                    format!(
                        "its featureset sets bits in word {word} ({value:#010x}), which no host \
                         here knows (this build knows words 0-{}); refusing rather than \
                         truncating",
                        NR_WORDS - 1
                    ),
                ));
            }
            Err(e) => {
                return Err(Error::Input(crate::error::InputError::new(
                    "--featureset",
                    1,
                    e.to_string(),
                )));
            }
        };
        let cpu = VmCpu::starting(req.guest, vendor, parsed.featureset);
        let where_to = Placement {
            to: req.host.as_deref(),
            force: req.force,
            ..Placement::default()
        };
        let placed = self.place("import", &req.name, &cpu, where_to)?;
        Ok(Landing {
            featureset: parsed.featureset,
            origin: Origin::Recorded {
                words: parsed.words.unwrap_or(NR_WORDS),
            },
            host: placed.host,
            check: placed.check,
        })
    }

    /// Plan (and unless `dry_run`, carry out) moving every running VM off `host`. Refused,
    /// with every VM's checks, if any VM has nowhere to go.
    pub fn evacuate(&mut self, host: &str, dry_run: bool) -> Result<EvacuationReport, Error> {
        self.host(host)?;
        let mut load: BTreeMap<String, usize> = self
            .hosts
            .iter()
            .map(|h| (h.name.clone(), self.resident(&h.name).count()))
            .collect();
        let mut moves = Vec::new();
        let mut stuck_checks = Vec::new();
        let mut details = Vec::new();
        for vm in self.resident(host) {
            let Some(cpu) = VmCpu::of(vm) else { continue };
            let mut candidates: Vec<&Host> = self.hosts.iter().filter(|h| h.name != host).collect();
            candidates.sort_by_key(|h| load.get(&h.name).copied().unwrap_or(0));
            let checks: Vec<HostCheck> = candidates
                .iter()
                .map(|h| check::check(&self.name, &vm.name, &cpu, h))
                .collect();
            match checks.iter().find(|c| c.accepted) {
                Some(c) => {
                    *load.entry(c.host.clone()).or_default() += 1;
                    moves.push(Move {
                        vm: vm.name.clone(),
                        to: c.host.clone(),
                    });
                }
                None => {
                    details.push(format!("VM {} has no other host that accepts it", vm.name));
                    stuck_checks.extend(checks);
                }
            }
        }
        if !details.is_empty() {
            return Err(refused(
                "evacuate",
                host,
                match details.len() {
                    1 => "1 VM cannot move anywhere".to_string(),
                    n => format!("{n} VMs cannot move anywhere"),
                },
                stuck_checks,
                None,
                details,
            ));
        }
        if !dry_run {
            for m in &moves {
                if let Some(vm) = self.find_vm_mut(&m.vm) {
                    vm.host = Some(m.to.clone());
                }
            }
        }
        Ok(EvacuationReport {
            pool: self.name.clone(),
            host: host.to_string(),
            applied: !dry_run,
            moves,
        })
    }

    /// Everything about one VM's CPU, checked against every host here and in `others`.
    pub fn explain_vm(&self, name: &str, others: &[&Pool]) -> Result<Explanation, Error> {
        let vm = self.vm(name)?;
        let level = self.level(vm.guest);
        let mut notes = Vec::new();
        let mut destinations = Vec::new();
        match VmCpu::of(vm) {
            Some(cpu) => {
                destinations = check_pool(self, name, &cpu, None);
                for other in others {
                    destinations.extend(check_pool(other, name, &cpu, None));
                }
                if !cpu.waived.is_empty() {
                    notes.push(
                        "force records clear when the VM restarts at the pool level".to_string(),
                    );
                }
            }
            None => notes.push(if vm.template {
                "template: moves and copies need no CPU check".to_string()
            } else {
                "halted: no CPU check; it gets the pool level when it starts".to_string()
            }),
        }
        let (above, below) = match (vm.featureset, level) {
            (Some(fs), Some(level)) => (names(&(fs - level)), names(&(level - fs))),
            _ => (Vec::new(), Vec::new()),
        };
        if !above.is_empty() {
            notes.push(format!(
                "above the pool level by {}: dropped at its next reboot",
                above.len()
            ));
        }
        Ok(Explanation {
            pool: self.name.clone(),
            vm: name.to_string(),
            guest: vm.guest,
            power: vm.power,
            host: vm.host.clone(),
            vendor: vm.vendor.map(|v| v.to_string()),
            featureset: vm.featureset.as_ref().map(Features::from),
            origin: vm.origin.as_ref().map(|o| o.to_string()),
            level: level.as_ref().map(Features::from),
            above_level: above,
            below_level: below,
            forced: vm.forced.iter().map(ForceOut::from).collect(),
            destinations,
            notes,
        })
    }

    fn least_loaded(&self, exclude: Option<&str>) -> &Host {
        self.hosts
            .iter()
            .filter(|h| Some(h.name.as_str()) != exclude)
            .min_by_key(|h| self.resident(&h.name).count())
            .unwrap_or(&self.hosts[0])
    }

    /// Choose and check a destination: `to` if given; otherwise `prefer` if it accepts, then
    /// the least loaded accepting host other than `exclude`. `force` lets a named destination
    /// through missing features (never a vendor mismatch).
    fn place(
        &self,
        operation: &str,
        vm: &str,
        cpu: &VmCpu,
        where_to: Placement<'_>,
    ) -> Result<Placed, Error> {
        let Placement {
            to,
            prefer,
            exclude,
            force,
        } = where_to;
        if self.hosts.is_empty() {
            return Err(refused(
                operation,
                vm,
                format!("pool {} has no hosts", self.name),
                Vec::new(),
                None,
                Vec::new(),
            ));
        }
        if let Some(to) = to {
            let host = self.host(to)?;
            let c = check::check(&self.name, vm, cpu, host);
            if c.accepted || (force && c.vendor_mismatch.is_none()) {
                return Ok(Placed {
                    host: to.to_string(),
                    check: c,
                });
            }
            // Other hosts that would take it (not the one it is leaving).
            let others: Vec<HostCheck> = check_pool(self, vm, cpu, Some(to))
                .into_iter()
                .filter(|c| Some(c.host.as_str()) != exclude)
                .collect();
            let ok = accepting(&others);
            let mut details = Vec::new();
            if c.vendor_mismatch.is_some() && force {
                details.push("force cannot cross vendors".to_string());
            }
            let reason = match &c.vendor_mismatch {
                Some(_) => format!("{} {}", c.host, c.summary()),
                None => match c.missing.len() {
                    1 => format!("{} lacks 1 of the VM's features", c.host),
                    n => format!("{} lacks {n} of the VM's features", c.host),
                },
            };
            return Err(refused(operation, vm, reason, vec![c], Some(ok), details));
        }
        if force {
            return Err(usage(
                "--force needs an explicit destination host (--to/--on): it waives features \
                 only for a host you name",
            ));
        }
        let mut order: Vec<&Host> = self
            .hosts
            .iter()
            .filter(|h| Some(h.name.as_str()) != exclude)
            .collect();
        order.sort_by_key(|h| {
            (
                Some(h.name.as_str()) != prefer,
                self.resident(&h.name).count(),
            )
        });
        let checks: Vec<HostCheck> = order
            .iter()
            .map(|h| check::check(&self.name, vm, cpu, h))
            .collect();
        if let Some(c) = checks.iter().find(|c| c.accepted) {
            return Ok(Placed {
                host: c.host.clone(),
                check: c.clone(),
            });
        }
        Err(refused(
            operation,
            vm,
            format!("no host of pool {} accepts it", self.name),
            checks,
            Some(Vec::new()),
            Vec::new(),
        ))
    }

    fn vm_report(&self, name: &str, operation: &str) -> VmReport {
        let vm = self.find_vm(name).expect("VM exists");
        VmReport {
            pool: self.name.clone(),
            vm: name.to_string(),
            operation: operation.to_string(),
            guest: vm.guest,
            power: vm.power,
            host: vm.host.clone(),
            vendor: vm.vendor.map(|v| v.to_string()),
            featureset: vm.featureset.as_ref().map(Features::from),
            check: None,
            forced: Vec::new(),
            lost: Vec::new(),
            gained: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// A chosen destination and the check that allowed it.
struct Placed {
    host: String,
    check: HostCheck,
}

/// What [`Pool::import_vm`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRequest {
    /// The VM's name.
    pub name: String,
    /// PV or HVM.
    pub guest: GuestType,
    /// The host it lands on (default: the least loaded, or the first that accepts it).
    pub host: Option<String>,
    /// The vendor it last booted on (default: the pool's).
    pub vendor: Option<Vendor>,
    /// The featureset its old toolstack recorded (XAPI string or names), if any.
    pub featureset: Option<String>,
    /// It arrives suspended rather than running.
    pub suspended: bool,
    /// Let it in even if the landing host lacks features (recorded).
    pub force: bool,
}

fn live_cpu(vm: &Vm) -> Result<VmCpu, Error> {
    VmCpu::of(vm).ok_or_else(|| {
        usage(format!(
            "VM {} is {} but has no featureset on record (state file edited?)",
            vm.name, vm.power
        ))
    })
}

fn record_force(
    vm: &mut Vm,
    operation: &str,
    host: &str,
    check: &HostCheck,
    level: Option<Featureset>,
) {
    if !check.missing_set.is_empty() {
        let above_level = match (vm.featureset, level) {
            (Some(fs), Some(level)) => fs.closed() - level,
            _ => Featureset::EMPTY,
        };
        vm.forced.push(ForceRecord {
            features: check.missing_set,
            operation: operation.to_string(),
            host: format!("{}/{host}", check.pool),
            above_level,
        });
    }
}

/// Where an imported VM lands, and with what.
struct Landing {
    featureset: Featureset,
    origin: Origin,
    host: String,
    check: HostCheck,
}

/// An import refused for `reason` alone (no host check to show).
fn refused_import(vm: &str, reason: String) -> Error {
    refused("import", vm, reason, Vec::new(), None, Vec::new())
}

/// How a host's default and max featuresets changed across a reboot, per guest type.
fn set_changes(old: &Host, new: &Host) -> Vec<SetChange> {
    let mut changes = Vec::new();
    for guest in GuestType::ALL {
        for (set, before, now) in [
            ("default", old.default_for(guest), new.default_for(guest)),
            ("max", old.max_for(guest), new.max_for(guest)),
        ] {
            let lost = before - now;
            let gained = now - before;
            if !lost.is_empty() || !gained.is_empty() {
                changes.push(SetChange {
                    guest,
                    set: set.to_string(),
                    lost: names(&lost),
                    gained: names(&gained),
                });
            }
        }
    }
    changes
}

fn level_change(before: &[Host], after: &[Host], guest: GuestType) -> LevelChange {
    let old = level_of(before, guest);
    let new = level_of(after, guest);
    let o = old.unwrap_or_default();
    let n = new.unwrap_or_default();
    // Only listed features: AMD's unnamed word-2 copies of leaf 1 are not features of their own.
    let lost = if new.is_some() {
        crate::report::listed(&(o - n))
    } else {
        Featureset::EMPTY
    };
    let lost = lost
        .iter()
        .map(|f| LevelFeature {
            feature: f.to_string(),
            locator: f.locator().to_string(),
            held_back_by: holders(after, guest, &n, f),
        })
        .collect();
    LevelChange {
        guest,
        before: old.as_ref().map(Features::from),
        after: new.as_ref().map(Features::from),
        lost,
        gained: names(&(n - o)),
    }
}

/// The members whose sets keep `feature` out of `level` (the level of `hosts`), with their
/// causes. Never empty for a feature the level lacks: a pool-OR feature that every member's
/// max has but none offers by default is held back by every member
/// ([`Cause::NoMemberDefault`]); one the level's closure removed is held back by whoever
/// holds back its absent prerequisite, with the dependency chain.
fn holders(
    hosts: &[Host],
    guest: GuestType,
    level: &Featureset,
    feature: Feature,
) -> Vec<HostCause> {
    holders_at(hosts, guest, level, feature, 0)
}

fn holders_at(
    hosts: &[Host],
    guest: GuestType,
    level: &Featureset,
    feature: Feature,
    depth: usize,
) -> Vec<HostCause> {
    let pool_or = SIMPLE_OR.contains(feature);
    let which = if pool_or { Which::Max } else { Which::Default };
    let direct: Vec<HostCause> = hosts
        .iter()
        .filter_map(|h| {
            let set = match which {
                Which::Default => h.default_for(guest),
                Which::Max => h.max_for(guest),
            };
            (!set.closed().contains(feature)).then(|| HostCause {
                host: h.name.clone(),
                cause: check::explain_absence(h, guest, which, feature),
            })
        })
        .collect();
    if !direct.is_empty() {
        return direct;
    }
    if pool_or
        && !hosts
            .iter()
            .any(|h| h.default_for(guest).closed().contains(feature))
    {
        return hosts
            .iter()
            .map(|h| HostCause {
                host: h.name.clone(),
                cause: Cause::NoMemberDefault { guest },
            })
            .collect();
    }
    // Every member offers it on its own terms: the level's closure took it with an absent
    // prerequisite (the table is acyclic; the bound only guards against surprises).
    let Some(prerequisite) = level.removed_by(feature).filter(|_| depth < 32) else {
        return Vec::new();
    };
    let link = Link {
        prerequisite: prerequisite.to_string(),
        dependent: feature.to_string(),
        reason: check::edge_reason(prerequisite, feature).to_string(),
    };
    holders_at(hosts, guest, level, prerequisite, depth + 1)
        .into_iter()
        .map(|h| HostCause {
            host: h.host,
            cause: match h.cause {
                Cause::Dependency {
                    mut chain,
                    root_feature,
                    root,
                } => {
                    chain.insert(0, link.clone());
                    Cause::Dependency {
                        chain,
                        root_feature,
                        root,
                    }
                }
                root => Cause::Dependency {
                    chain: vec![link.clone()],
                    root_feature: prerequisite.to_string(),
                    root: Box::new(root),
                },
            },
        })
        .collect()
}

/// Move a VM to another pool. A halted VM or template moves without a CPU check (it takes
/// the destination's level when it starts); a running or suspended VM is checked against
/// `to` (or the first accepting host of `dst`) exactly like an intra-pool migration.
pub fn migrate_between(
    src: &mut Pool,
    name: &str,
    dst: &mut Pool,
    to: Option<&str>,
    force: bool,
) -> Result<VmReport, Error> {
    if src.name == dst.name {
        return Err(usage(
            "source and destination pool are the same; use vm migrate --to",
        ));
    }
    let vm = src.vm(name)?.clone();
    if dst.find_vm(name).is_some() {
        return Err(usage(format!(
            "pool {} already has a VM `{name}`",
            dst.name
        )));
    }
    let mut moved = vm.clone();
    let mut check = None;
    let mut notes = Vec::new();
    match VmCpu::of(&vm) {
        None => {
            moved.host = None;
            notes.push(format!(
                "{}: moved without a CPU check; it starts at pool {}'s level",
                if vm.template { "template" } else { "halted" },
                dst.name
            ));
        }
        Some(cpu) => {
            let placed = dst.place(
                "migrate",
                name,
                &cpu,
                Placement {
                    to,
                    force,
                    ..Placement::default()
                },
            )?;
            moved.host = Some(placed.host.clone());
            record_force(
                &mut moved,
                "migrate",
                &placed.host,
                &placed.check,
                dst.level(vm.guest),
            );
            let reachable = check_pool(dst, name, &cpu, None);
            let n = reachable.iter().filter(|c| c.accepted).count();
            notes.push(format!(
                "in pool {} it can reach {n} of {} host{}",
                dst.name,
                dst.hosts.len(),
                if dst.hosts.len() == 1 { "" } else { "s" }
            ));
            if let Some(level) = dst.level(vm.guest) {
                let above = names(&(cpu.featureset - level));
                if !above.is_empty() {
                    notes.push(format!(
                        "above pool {}'s level by {}: {} (dropped at its next reboot)",
                        dst.name,
                        above.len(),
                        above.join(",")
                    ));
                }
            }
            check = Some(placed.check);
        }
    }
    src.vms.retain(|v| v.name != name);
    dst.vms.push(moved);
    let mut report = dst.vm_report(name, "migrate");
    if let Some(c) = &check {
        report.forced = names(&c.missing_set);
    }
    report.check = check;
    report.notes = notes;
    Ok(report)
}

/// Copy a halted VM or template, within a pool or to another, without a CPU check; with
/// `instantiate`, a template's copy is an ordinary VM.
pub fn copy_vm(
    src: &Pool,
    name: &str,
    dst: &mut Pool,
    as_name: &str,
    instantiate: bool,
) -> Result<VmReport, Error> {
    let vm = src.vm(name)?;
    if vm.power != PowerState::Halted {
        return Err(refused(
            "copy",
            name,
            format!("VM is {}; only a halted VM or template is copied", vm.power),
            Vec::new(),
            None,
            Vec::new(),
        ));
    }
    if !valid_name(as_name) {
        return Err(usage(format!("`{as_name}` is not a valid VM name")));
    }
    if dst.find_vm(as_name).is_some() {
        return Err(usage(format!(
            "pool {} already has a VM `{as_name}`",
            dst.name
        )));
    }
    let mut copy = Vm::new(as_name, vm.guest, vm.template && !instantiate);
    copy.power = PowerState::Halted;
    dst.vms.push(copy);
    let mut report = dst.vm_report(as_name, "copy");
    report.notes.push(format!(
        "copied without a CPU check; it starts at pool {}'s level",
        dst.name
    ));
    Ok(report)
}

/// Where a VM may be placed: a named host (`to`), else the least loaded accepting host,
/// trying `prefer` first and never `exclude`; `force` lets a named host through missing
/// features (never a vendor mismatch).
#[derive(Clone, Copy, Debug, Default)]
struct Placement<'a> {
    to: Option<&'a str>,
    prefer: Option<&'a str>,
    exclude: Option<&'a str>,
    force: bool,
}
