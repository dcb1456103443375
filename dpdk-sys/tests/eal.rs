//! End-to-end test against the real DPDK: EAL, mempool, mbufs, two virtual ports, bursts,
//! rings across threads, errors and cleanup.
//!
//! EAL can be initialised once per process, so this file holds a single `#[test]` that walks
//! through everything in order. Runs as root without hugepages: `--no-huge --no-shconf`
//! (`--in-memory` cannot be combined with `--no-huge`: EAL treats no-huge as legacy memory
//! and rejects "--legacy-mem is not compatible with --in-memory"; `--no-shconf` gives the
//! same no-shared-files, no-IPC behaviour).
//! Ports: `net_ring0` (its RX queue *i* and TX queue *i* are the same rte_ring, so what is
//! sent comes back) and `net_null0` (RX makes 64-byte packets, TX frees).

use std::sync::Arc;

use dpdk_sys::*;

fn eal_args() -> Vec<String> {
    [
        "-l",
        "0",
        "--no-huge",
        "--no-shconf",
        "--file-prefix",
        "rvs-dpdk-sys-test",
        "-m",
        "256",
        "--no-pci",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_null0",
        "--log-level",
        "warning",
        "--no-telemetry",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn dpdk_end_to_end() {
    // ---- EAL -------------------------------------------------------------------------
    let eal = Eal::init(&eal_args()).expect("EAL init");
    let again = Eal::init(&eal_args()).unwrap_err();
    assert_eq!(again.errno, libc::EALREADY, "{again}");
    assert!(tsc_hz() > 0);
    let t0 = tsc();
    assert!(tsc() >= t0);
    assert_eq!(lcore_id(), 0, "EAL makes the initialising thread lcore 0");

    let ring_port = eal.port_by_name("net_ring0").expect("net_ring0");
    let null_port = eal.port_by_name("net_null0").expect("net_null0");
    let mut ports = eal.ports();
    ports.sort_unstable();
    let mut want = vec![ring_port, null_port];
    want.sort_unstable();
    assert_eq!(ports, want);
    // A negative-return error (no rte_errno involved).
    let e = eal.port_by_name("nope").unwrap_err();
    assert_eq!(e.errno, libc::ENODEV, "{e}");
    assert!(e.to_string().starts_with("rte_eth_dev_get_port_by_name(\"nope\"): "), "{e}");

    let ri = port_info(&eal, ring_port).unwrap();
    assert_eq!((ri.name.as_str(), ri.driver.as_str()), ("net_ring0", "net_ring"));
    assert!(ri.max_rx_queues >= 1 && ri.max_tx_queues >= 1);
    let ni = port_info(&eal, null_port).unwrap();
    assert_eq!((ni.name.as_str(), ni.driver.as_str()), ("net_null0", "net_null"));
    assert!(port_info(&eal, 31).is_err());

    // ---- mempool & mbuf ------------------------------------------------------------------
    let pool = Arc::new(Mempool::new(&eal, "rvs_test_pool", 4095, 32, MBUF_DEFAULT_BUF_SIZE, -1).expect("pool"));
    // rte_errno path: a duplicate name fails with EEXIST, read through the C shim.
    let dup = Mempool::new(&eal, "rvs_test_pool", 63, 0, MBUF_DEFAULT_BUF_SIZE, -1).unwrap_err();
    assert_eq!(dup.errno, libc::EEXIST, "{dup}");
    assert!(!dup.message.is_empty());
    assert!(dup.op.contains("rte_pktmbuf_pool_create"), "{dup}");
    assert_eq!(pool.in_use(), 0);

    let mut m = pool.alloc().expect("mbuf");
    assert_eq!(pool.in_use(), 1);
    assert!(m.is_empty());
    assert_eq!(m.headroom(), PKTMBUF_HEADROOM);
    assert_eq!(m.tailroom(), usize::from(MBUF_DEFAULT_BUF_SIZE) - PKTMBUF_HEADROOM);
    m.append(4).unwrap().copy_from_slice(b"body");
    m.prepend(3).unwrap().copy_from_slice(b"hdr");
    assert_eq!(m.data(), b"hdrbody");
    assert_eq!((m.len(), m.pkt_len(), m.nb_segs()), (7, 7, 1));
    // Headroom limit: 125 bytes left; asking for more changes nothing.
    assert_eq!(m.headroom(), PKTMBUF_HEADROOM - 3);
    assert!(m.prepend(PKTMBUF_HEADROOM).is_none());
    assert!(m.prepend(70_000).is_none());
    assert_eq!(m.data(), b"hdrbody");
    assert_eq!(m.prepend(PKTMBUF_HEADROOM - 3).unwrap().len(), PKTMBUF_HEADROOM - 3);
    assert_eq!(m.headroom(), 0);
    assert!(m.prepend(1).is_none());
    assert!(m.adj(PKTMBUF_HEADROOM - 3));
    assert_eq!(m.data(), b"hdrbody");
    assert!(m.adj(3));
    assert_eq!(m.data(), b"body");
    assert!(!m.adj(5), "adj beyond the data must fail");
    assert_eq!(m.data(), b"body");
    // Tailroom limit.
    let tail = m.tailroom();
    assert!(m.append(tail + 1).is_none());
    assert_eq!(m.len(), 4);
    assert_eq!(m.append(tail).unwrap().len(), tail);
    assert_eq!(m.tailroom(), 0);
    assert!(m.trim(tail));
    assert!(m.trim(2));
    assert_eq!(m.data(), b"bo");
    assert!(!m.trim(3));
    m.data_mut().copy_from_slice(b"OK");
    assert_eq!(m.data(), b"OK");
    m.set_port(9);
    assert_eq!(m.port(), 9);
    assert_eq!(m.rss_hash(), None);
    drop(m);
    assert_eq!(pool.in_use(), 0);

    let mut bulk = Vec::new();
    assert!(pool.alloc_bulk(&mut bulk, 100));
    assert_eq!(pool.in_use(), 100);
    bulk.clear();
    assert_eq!(pool.in_use(), 0);

    // ---- net_ring: TX loops back to RX --------------------------------------------------
    let conf = PortConf {
        n_rx_queues: 1,
        n_tx_queues: 1,
        rx_desc: 512,
        tx_desc: 512,
        mtu: None,
        rss: true,
        promiscuous: true,
    };
    // Not configured yet: bursts are refused, nothing is lost.
    let mut pkts: Vec<Mbuf> = vec![pool.alloc_from(b"x").unwrap()];
    assert_eq!(tx_burst(ring_port, 0, &mut pkts), 0);
    assert_eq!(pkts.len(), 1);
    assert!(port_start(ring_port).is_err(), "start before configure");
    pkts.clear();

    let setup = port_configure(&eal, ring_port, &conf, &pool).expect("configure ring port");
    assert!(!setup.rss, "net_ring has no RSS");
    assert!(setup.notes.iter().any(|n| n.contains("RSS")), "{setup:?}");
    let too_many = PortConf { n_rx_queues: 1000, ..conf.clone() };
    let e = port_configure(&eal, ring_port, &too_many, &pool).unwrap_err();
    assert!(e.op.contains(&format!("port {ring_port}")), "{e}");
    let setup = port_configure(&eal, ring_port, &conf, &pool).expect("reconfigure ring port");
    assert!(!setup.rss);
    port_start(ring_port).expect("start ring port");
    assert!(port_link(ring_port).up);
    port_stats_reset(ring_port);

    let payload = |i: usize| format!("packet number {i:03} from the test").into_bytes();
    let mut pkts: Vec<Mbuf> = Vec::with_capacity(64);
    for i in 0..40 {
        let mut m = pool.alloc_from(&payload(i)).unwrap();
        m.set_port(ring_port);
        pkts.push(m);
    }
    // Queue 1 is not configured: refused, packets stay.
    assert_eq!(tx_burst(ring_port, 1, &mut pkts), 0);
    assert_eq!(pkts.len(), 40);
    assert_eq!(tx_burst(ring_port, 0, &mut pkts), 40);
    assert!(pkts.is_empty());
    assert_eq!(pool.in_use(), 40, "the 40 mbufs now sit in the port's ring");

    let mut rx: Vec<Mbuf> = Vec::with_capacity(16);
    let mut got = Vec::new();
    for _ in 0..100 {
        let n = rx_burst(ring_port, 0, &mut rx);
        assert!(n <= 16 && rx.len() <= 16, "never beyond the reserved capacity");
        got.append(&mut rx); // empties rx, keeps its capacity
        if got.len() == 40 {
            break;
        }
    }
    assert_eq!(got.len(), 40);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.data(), payload(i).as_slice(), "packet {i}");
        assert_eq!(m.port(), ring_port);
    }
    let mut full: Vec<Mbuf> = Vec::new();
    assert_eq!(rx_burst(ring_port, 0, &mut full), 0, "no capacity, no receive");
    let stats = port_stats(ring_port).unwrap();
    assert_eq!((stats.opackets, stats.ipackets), (40, 40), "{stats:?}");
    assert_eq!((stats.q_opackets.clone(), stats.q_ipackets.clone()), (vec![40], vec![40]));
    assert_eq!(stats.oerrors, 0);

    // Send the received packets back out once more: partial sends keep the rest in order.
    assert_eq!(tx_burst(ring_port, 0, &mut got), 40);
    let mut back: Vec<Mbuf> = Vec::with_capacity(64);
    while back.len() < 40 {
        assert!(rx_burst(ring_port, 0, &mut back) > 0);
    }
    drop(back);
    assert_eq!(pool.in_use(), 0);

    // ---- net_null: RX generates, TX consumes -----------------------------------------------
    let null_conf = PortConf { rss: false, ..conf.clone() };
    port_configure(&eal, null_port, &null_conf, &pool).expect("configure null port");
    port_start(null_port).expect("start null port");
    let mut rx: Vec<Mbuf> = Vec::with_capacity(32);
    assert_eq!(rx_burst(null_port, 0, &mut rx), 32);
    assert!(rx.iter().all(|m| m.len() == 64), "net_null makes 64-byte packets");
    assert_eq!(pool.in_use(), 32);
    assert_eq!(tx_burst(null_port, 0, &mut rx), 32);
    assert_eq!(pool.in_use(), 0, "net_null frees what it sends");
    let ns = port_stats(null_port).unwrap();
    assert_eq!((ns.ipackets, ns.opackets), (32, 32), "{ns:?}");

    // ---- rte_ring between threads --------------------------------------------------------
    let ring = Arc::new(Ring::new(&eal, "rvs_test_ring", 1024, false, true).expect("ring"));
    assert_eq!(ring.capacity(), 1024);
    let dup = Ring::new(&eal, "rvs_test_ring", 8, false, false).unwrap_err();
    assert_eq!(dup.errno, libc::EEXIST, "{dup}");
    let producer = {
        let (ring, pool) = (ring.clone(), pool.clone());
        std::thread::spawn(move || {
            assert_eq!(lcore_id(), u32::MAX, "a new thread has no lcore");
            let id = register_thread().expect("register");
            assert_ne!(id, 0);
            assert_eq!(lcore_id(), id);
            assert_eq!(register_thread().unwrap(), id, "idempotent");
            let mut batch: Vec<Mbuf> = Vec::with_capacity(10);
            for i in 0..500u32 {
                batch.push(pool.alloc_from(&i.to_be_bytes()).unwrap());
                if batch.len() == 10 {
                    while !batch.is_empty() {
                        ring.enqueue_burst(&mut batch);
                    }
                }
            }
            let mut last = pool.alloc_from(&500u32.to_be_bytes()).unwrap();
            while let Err(m) = ring.enqueue(last) {
                last = m;
            }
            unregister_thread();
            assert_eq!(lcore_id(), u32::MAX);
            id
        })
    };
    let mut seen = Vec::new();
    let mut out: Vec<Mbuf> = Vec::with_capacity(64);
    while seen.len() < 501 {
        if ring.dequeue_burst(&mut out, 64) == 0 {
            std::thread::yield_now();
        }
        seen.extend(out.drain(..).map(|m| u32::from_be_bytes(m.data().try_into().unwrap())));
    }
    let worker_lcore = producer.join().expect("producer thread");
    assert_ne!(worker_lcore, u32::MAX);
    assert_eq!(seen, (0..=500).collect::<Vec<u32>>(), "FIFO across threads");
    assert_eq!(ring.count(), 0);

    // A full ring gives the mbuf back; dropping a non-empty ring frees its mbufs.
    let small = Ring::new(&eal, "rvs_small_ring", 2, true, true).unwrap();
    assert!(small.enqueue(pool.alloc().unwrap()).is_ok());
    assert!(small.enqueue(pool.alloc().unwrap()).is_ok());
    let back = small.enqueue(pool.alloc().unwrap()).unwrap_err();
    drop(back);
    assert_eq!(small.count(), 2);
    assert_eq!(pool.in_use(), 2);
    drop(small);
    assert_eq!(pool.in_use(), 0);

    // ---- rte_flow: net_ring has no flow support, so steering is refused cleanly ----------------
    let rule = LportRule {
        dst: std::net::Ipv4Addr::new(198, 51, 100, 7),
        l4: FlowL4::Tcp,
        port_mask: 1,
        port_value: 0,
        queue: 0,
    };
    let e = flow_validate(ring_port, &rule).unwrap_err();
    assert!(e.errno > 0 && e.op.contains("rte_flow_validate"), "{e}");
    let e = FlowRule::create(ring_port, &LportRule { l4: FlowL4::Udp, ..rule }).unwrap_err();
    assert!(e.errno > 0 && e.op.contains("rte_flow_create"), "{e}");
    let e = flow_validate(31, &rule).unwrap_err();
    assert_eq!(e.errno, libc::EINVAL, "a port that is not started: {e}");

    // ---- teardown -------------------------------------------------------------------------
    let busy = eal.check_cleanup().unwrap_err();
    assert_eq!(busy.errno, libc::EBUSY, "{busy}");
    port_stop(ring_port).expect("stop ring");
    let mut p = vec![pool.alloc_from(b"late").unwrap()];
    assert_eq!(tx_burst(ring_port, 0, &mut p), 0, "stopped port refuses bursts");
    drop(p);
    port_stop(ring_port).expect("second stop is a no-op");
    port_close(ring_port).expect("close ring");
    port_close(null_port).expect("close null");
    drop(ring);
    assert!(eal.check_cleanup().unwrap_err().message.contains("handle"));
    drop(pool);
    eal.check_cleanup().expect("nothing left");
    eal.cleanup().expect("EAL cleanup");
    let late = std::thread::spawn(register_thread).join().unwrap();
    assert_eq!(late.unwrap_err().errno, libc::EPERM, "no registration after cleanup");
}
