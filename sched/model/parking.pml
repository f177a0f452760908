/*
 * weft: a Promela model of the multi-thread executor's parking / wake-up protocol
 * (sched/multi_thread.cpp: schedule/start/defer, push_local, push_inject, next_task, search,
 * notify_parked, transition_to_searching, transition_from_searching, work_visible, park,
 * worker_loop). See README.md in this directory for how to run it.
 *
 * Memory model. Promela interleaves whole statements: it is sequentially consistent. The C++
 * code uses seq_cst RMWs/loads on searching_ and sleeping_, and a seq_cst fence
 * (store_load_fence) between the push and the counter reads in notify_parked and between the
 * registration as a sleeper and the queue re-check in park. By the C++20 fence rule
 * ([atomics.order]: a write sequenced before fence X, a read sequenced after fence Y, X before
 * Y in S => the read sees the write), each side of that Dekker pair sees the other's store, as
 * it would under SC; so the relaxed/acquire queue loads of work_visible may be modelled as
 * plain SC reads. The fences themselves are therefore no-ops here (marked "fence").
 * Sections under idle_mutex_ / inject_mutex_ are atomic blocks. Every other shared access is
 * its own statement, so spin tries every interleaving of them.
 *
 * Abstractions.
 *  - Tasks are activation ids 1..K (each push of a handle is a new id). K bounds the model.
 *  - Local queues and the inject queue are FIFO channels; a push is visible from the moment
 *    the tail (resp. inject_size_) store happens, modelled as one step.
 *  - steal_into: the claim (CAS on the victim's head) takes n - n/2 tasks in one step; the
 *    thief runs the first and the others stay invisible ("in transit") until the thief's
 *    separate tail store publishes them in its own queue.
 *  - The choice of sleeper in notify_parked (the most recent one but the caller) is any
 *    sleeper but the caller; the first steal victim is any worker. Both over-approximate.
 *  - The eventfd is a sticky bit per worker: set by the waker, consumed by the blocking poll
 *    (which waits for it), and perhaps reaped early by a non-blocking poll.
 *  - I/O: a running task may submit one I/O on its worker's ring; a later poll of that ring
 *    (blocking or not) completes it, and the completion schedules the task on that worker's
 *    local queue (push_local + notify_parked with self = that worker). A blocking poll with
 *    outstanding I/O returns once the kernel completes it (no spurious returns otherwise:
 *    the worst case for lost wake-ups).
 *  - A task, when run, ends, or spawns (start: push_local + notify), or wakes a task
 *    (schedule from the running task: LIFO slot, the displaced task to the local queue +
 *    notify), or yields (defer: push_local, no notify), or submits I/O.
 *  - LIFO streak limit, event_interval, the inject-first turn: next_task may nondeterministically
 *    move the LIFO task behind the queue (no notify). Queue overflow to inject (capacity 256)
 *    and the shutdown path (stopping_, main_done_, wake_worker0) are left out.
 *  - transition_to_searching reads its two counters with relaxed loads; modelled as two
 *    separate reads (any interleaving), then the RMW.
 *
 * Properties.
 *  - assertion: a task is taken (run) at most once;
 *  - monitor `lost_wakeup`: when no process can move (every worker blocked in its ring, the
 *    producer done), no task is queued (pending == 0); invalid end states = deadlock;
 *  - LTL `live`: [] (pending > 0 -> <> pending == 0) under weak fairness (no lost wake-up and
 *    no livelock: every pushed task is eventually taken by some worker).
 *
 * Bug injection (-D...): BUG_NO_RECHECK (park blocks without looking at the queues),
 * BUG_CHECK_BEFORE_REGISTER (the re-check happens before the worker registers as a sleeper),
 * BUG_DEC_AFTER_CHECK (the searcher leaves searching_ after its re-check).
 */

#ifndef N
#define N 3 /* workers */
#endif
#ifndef K
#define K 3 /* task activations in all */
#endif
#define NONE 255

chan lq[N] = [K] of { byte };  /* each worker's local steal_queue */
chan inj = [K] of { byte };    /* the inject queue */
bool sleeper[N];               /* in sleepers_ (w.sleeping) */
bool wbit[N];                  /* eventfd written and not yet consumed */
byte searching_;
byte sleeping_;
byte nexttid = 1;              /* next activation id (ghost) */
byte pending;                  /* pushed, not yet taken (ghost) */
byte ran[K + 1];               /* times each id was taken (ghost) */

inline take(t) {
  assert(t != 0 && ran[t] == 0);
  ran[t]++;
  pending--
}

/* notify_parked(); self: the calling worker, NONE for a foreign thread. Uses local j. */
inline notify(self) {
  /* fence */
  if
  :: searching_ != 0 -> skip              /* seq_cst load */
  :: else ->
     if
     :: sleeping_ == 0 -> skip            /* seq_cst load */
     :: else ->
        atomic {                          /* idle_mutex_ */
          if
          :: searching_ != 0 -> skip
          :: else ->
             j = NONE;
             if
             :: sleeper[0] && self != 0 -> j = 0
#if N > 1
             :: sleeper[1] && self != 1 -> j = 1
#endif
#if N > 2
             :: sleeper[2] && self != 2 -> j = 2
#endif
#if N > 3
             :: sleeper[3] && self != 3 -> j = 3
#endif
             :: else -> skip
             fi;
             if
             :: j != NONE ->
                sleeper[j] = false;
                sleeping_--;
                searching_++;                /* it wakes up searching */
                wbit[j] = true;              /* reactor->wake(), under the lock */
                j = NONE
             :: else -> skip
             fi
          fi
        }
     fi
  fi
}

inline pop_inject() {
  atomic {
    if
    :: len(inj) > 0 -> inj?t; take(t)
    :: else -> skip
    fi
  }
}

/* next_task(): the LIFO slot (or, streak over, move it behind the queue), the queue, inject */
inline next_task() {
  if
  :: lifo != 0 ->
     if
     :: atomic { t = lifo; lifo = 0; take(t) }
     :: atomic { lq[me]!lifo; lifo = 0 }   /* push_local, no notify */
     fi
  :: else -> skip
  fi;
  if
  :: t == 0 ->
     atomic {
       if
       :: len(lq[me]) > 0 -> lq[me]?t; take(t)
       :: else -> skip
       fi
     }
  :: else -> skip
  fi;
  if
  :: t == 0 -> pop_inject()
  :: else -> skip
  fi
}

/* the ring delivers this worker's I/O completion: schedule() from a non-running worker */
inline deliver_io() {
  atomic { lq[me]!io; pending++; io = 0 };
  notify(me)
}

/* poll(block=false) */
inline nb_poll() {
  if
  :: wbit[me] -> wbit[me] = false     /* a stale wake-up's completion reaped here */
  :: true -> skip
  fi;
  if
  :: io != 0 -> deliver_io()
  :: true -> skip                     /* not completed yet */
  fi
}

/* transition_to_searching(): result in go */
inline to_searching() {
  if
  :: searching -> go = true
  :: else ->
     s1 = searching_;                 /* relaxed */
     s2 = sleeping_;                  /* relaxed */
     if
     :: 2 * s1 >= N - s2 && s1 > 0 -> go = false
     :: else -> atomic { searching_++; searching = true }; go = true
     fi;
     s1 = 0;
     s2 = 0
  fi
}

inline steal(v) {
  atomic {                            /* the CAS on the victim's head */
    if
    :: len(lq[v]) > 0 ->
       x = len(lq[v]);                /* n; n - n/2 are taken */
       assert(x <= 4);
       lq[v]?t;
       take(t);
       if
       :: x >= 3 -> lq[v]?x           /* one more, in transit to our queue */
       :: else -> x = 0
       fi
    :: else -> skip
    fi
  };
  if
  :: x != 0 -> lq[me]!x; x = 0        /* dst.tail_ store: now visible */
  :: else -> skip
  fi
}

inline search() {
  pop_inject();
  if
  :: t == 0 ->
     if
     :: st = 0
#if N > 1
     :: st = 1
#endif
#if N > 2
     :: st = 2
#endif
#if N > 3
     :: st = 3
#endif
     fi;
     k = 0;
     do
     :: t == 0 && k < N ->
        v = (st + k) % N;
        if
        :: v != me -> steal(v)
        :: else -> skip
        fi;
        k++
     :: else -> break
     od;
     k = 0;
     v = 0;
     st = 0
  :: else -> skip
  fi;
  if
  :: t == 0 -> pop_inject()
  :: else -> skip
  fi
}

inline from_searching() {
  if
  :: searching ->
     atomic { searching = false; s1 = searching_; searching_-- };   /* fetch_sub */
     if
     :: s1 == 1 -> s1 = 0; notify(me)
     :: else -> s1 = 0
     fi
  :: else -> skip
  fi
}

/* work_visible(): inject_size_, then every local queue, one load at a time; result in go */
inline work_visible() {
  go = false;
  if
  :: len(inj) > 0 -> go = true
  :: else -> skip
  fi;
  k = 0;
  do
  :: !go && k < N ->
     if
     :: len(lq[k]) > 0 -> go = true
     :: else -> skip
     fi;
     k++
  :: else -> break
  od;
  k = 0
}

inline leave_searching() {
  if
  :: searching -> atomic { searching = false; searching_-- }
  :: else -> skip
  fi
}

inline park() {
#ifdef BUG_CHECK_BEFORE_REGISTER
  leave_searching();
  work_visible();
#endif
  atomic { sleeper[me] = true; sleeping_++ }   /* idle_mutex_: register */
#ifdef BUG_DEC_AFTER_CHECK
  work_visible();
  leave_searching();
#else
#ifndef BUG_CHECK_BEFORE_REGISTER
  leave_searching();
  /* fence */
#ifdef BUG_NO_RECHECK
  go = false;
#else
  work_visible();
#endif
#endif
#endif
  if
  :: !go ->
end_blocked:                            /* poll(block=true) */
     if
     :: wbit[me] -> wbit[me] = false
     :: io != 0 -> deliver_io()
     fi
  :: else -> skip
  fi;
  go = false;
  atomic {                              /* idle_mutex_ */
    if
    :: sleeper[me] -> sleeper[me] = false; sleeping_--   /* woke by itself or saw work */
    :: else -> searching = true                         /* notify_parked counted it */
    fi
  }
}

/* the task body: what resuming it may do to the scheduler */
inline run_task() {
  t = 0;
  if
  :: skip                                               /* ends or waits elsewhere */
  :: atomic { nexttid <= K ->                           /* start(): spawn */
       lq[me]!nexttid; nexttid++; pending++ };
     notify(me)
#ifndef NO_LIFO
  :: atomic { nexttid <= K ->                           /* schedule() from the running task */
       v = lifo; lifo = nexttid; nexttid++; pending++ };
     if
     :: v != 0 -> lq[me]!v; v = 0; notify(me)
     :: else -> skip
     fi
#endif
#ifndef NO_DEFER
  :: atomic { nexttid <= K ->                           /* defer(): no notify */
       lq[me]!nexttid; nexttid++; pending++ }
#endif
#ifndef NO_IO
  :: atomic { nexttid <= K && io == 0 ->                /* submits I/O on this ring */
       io = nexttid; nexttid++ }
#endif
  fi
}

active [N] proctype worker() {
  byte me = _pid;
  byte t, x, v, k, j, st, s1, s2;
  bool go;
  /* worker-owned state (thread-local in the C++ code) */
  byte lifo;        /* the LIFO slot */
  byte io;          /* id of the I/O outstanding on this worker's ring, 0: none */
  bool searching;   /* w.searching: counted in searching_ */

  do
  :: true ->
     t = 0;
     next_task();
     if
     :: t == 0 -> nb_poll(); next_task()
     :: else -> skip
     fi;
     if
     :: t == 0 ->
        to_searching();
        if
        :: go -> go = false; search()
        :: else -> skip
        fi
     :: else -> skip
     fi;
     if
     :: t == 0 -> park()
     :: else -> from_searching(); run_task()
     fi
  od
}

/* a thread outside the workers: schedule() -> push_inject + notify_parked(self = none) */
active proctype producer() {
  byte t, j;
  do
  :: atomic { nexttid <= K -> inj!nexttid; nexttid++; pending++ };
     notify(NONE)
  :: else -> break
  od
}

/* When nothing can move any more, no task may be left in a queue. */
active proctype lost_wakeup() {
  timeout -> assert(pending == 0)
}

ltl live { [] ((pending > 0) -> <> (pending == 0)) }
