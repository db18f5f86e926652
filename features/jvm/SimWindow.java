package simguard.features;

import static simguard.features.SimFeatures.ANSWERED;
import static simguard.features.SimFeatures.CANCELLED;
import static simguard.features.SimFeatures.GATEWAY;
import static simguard.features.SimFeatures.INTL;
import static simguard.features.SimFeatures.NIGHT;
import static simguard.features.SimFeatures.ONNET;
import static simguard.features.SimFeatures.OUT;
import static simguard.features.SimFeatures.PREMIUM;
import static simguard.features.SimFeatures.SHORT;
import static simguard.features.SimFeatures.SMS;
import static simguard.features.SimFeatures.VOICE;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What one of a SIM's windows holds of its sub-buckets, kept as they enter and leave it (counts,
 * callers, cells, IMEIs, calls out per clock hour), and the feature values it gives with its
 * newest calls: the definitions of features/sim.py.
 */
final class SimWindow {
  /** The counts of features.sim_rows.BUCKET_COUNTS: which flags each event needs. */
  static final int[] COUNTS = {
    OUT | VOICE,                    // n_out
    OUT | VOICE | ANSWERED,         // n_answered
    OUT | VOICE | ANSWERED | SHORT, // n_short
    VOICE,                          // n_in (the event is not out: checked below)
    OUT | SMS,                      // n_sms_out
    OUT | VOICE | NIGHT,            // n_night
    OUT | VOICE | INTL,             // n_intl
    OUT | VOICE | PREMIUM,          // n_premium
    OUT | VOICE | ONNET,            // n_onnet
    OUT | VOICE | GATEWAY,          // n_gateway
    OUT | VOICE | CANCELLED,        // n_cancelled
  };
  static final int N_OUT = 0, N_ANSWERED = 1, N_SHORT = 2, N_IN = 3, N_SMS = 4, N_NIGHT = 5;

  final long[] counts = new long[COUNTS.length];
  final Map<String, Integer> callers = new HashMap<>();
  final Map<String, Integer> cells = new HashMap<>();
  final Map<String, Integer> imeis = new HashMap<>();
  /** calls out per clock hour */
  final Map<Long, Long> hours = new HashMap<>();

  static void count(Map<String, Integer> m, String k, int d) {
    if (k != null) {
      m.merge(k, d, (a, b) -> a + b == 0 ? null : a + b);
    }
  }

  void add(long bucket, SimFeatures.Bucket b, int d) {
    long out = 0;
    for (int i = 0; i < b.size(); i++) {
      int f = b.getFlags().get(i);
      boolean isOut = (f & OUT) != 0;
      for (int k = 0; k < COUNTS.length; k++) {
        boolean match = (f & COUNTS[k]) == COUNTS[k] && (k != N_IN || !isOut);
        counts[k] += match ? d : 0;
      }
      out += (f & (OUT | VOICE)) == (OUT | VOICE) ? 1 : 0;
      if (isOut) {
        count(cells, b.getCell().get(i), d);
        count(imeis, b.getImei().get(i), d);
      } else {
        count(callers, b.getParty().get(i), d);
      }
    }
    hours.merge(Math.floorDiv(bucket, 3600L), out * d, (a, c) -> a + c);
  }

  long peakHour() {
    long peak = 0;
    for (long n : hours.values()) {
      peak = Math.max(peak, n);
    }
    return peak;
  }

  long activeHours() {
    long n = 0;
    for (long v : hours.values()) {
      n += v > 0 ? 1 : 0;
    }
    return n;
  }

  /** The largest cross-SIM context value of the sub-buckets in a sliding window. */
  static final class SlidingMax {
    private final ArrayDeque<long[]> deque = new ArrayDeque<>();  // (bucket, value), values falling

    void add(long bucket, Integer value) {
      if (value == null) {
        return;
      }
      while (!deque.isEmpty() && deque.peekLast()[1] <= value) {
        deque.pollLast();
      }
      deque.addLast(new long[] {bucket, value});
    }

    void dropBefore(long bucket) {
      while (!deque.isEmpty() && deque.peekFirst()[0] < bucket) {
        deque.pollFirst();
      }
    }

    Long max() { return deque.isEmpty() ? null : deque.peekFirst()[1]; }
  }

  static Integer max(List<Integer> values) {
    Integer m = null;
    for (Integer v : values) {
      if (v != null && (m == null || v > m)) {
        m = v;
      }
    }
    return m;
  }

  static Double share(long num, long den) {
    return den > 0 ? (double) num / den : null;
  }

  /**
   * The values of a window, in the order of features.sim.window_feature_names (with the busiest
   * hour and the hours active for the long window only). {@code calls}: its newest calls out in
   * time order.
   */
  static void values(List<Double> out, SimWindow w, List<SimFeatures.Call> calls, boolean isLong, long seqMax) {
    long nOut = w.counts[N_OUT], nAnswered = w.counts[N_ANSWERED];
    int n = calls.size();
    List<Double> durations = new ArrayList<>();
    Set<String> callees = new HashSet<>();
    double s = 0, ss = 0;
    long sequential = 0;
    for (int i = 0; i < n; i++) {
      SimFeatures.Call c = calls.get(i);
      if (c.getAnswered() != null) {
        durations.add(c.getAnswered());
      }
      callees.add(c.getNumber());
      if (i > 0) {
        double gap = c.getT() - calls.get(i - 1).getT();
        s += gap;
        ss += gap * gap;
        Long x = c.getDigits(), y = calls.get(i - 1).getDigits();
        if (x != null && y != null) {
          long step = Math.abs(x - y);
          sequential += step >= 1 && step <= seqMax ? 1 : 0;
        }
      }
    }
    durations.sort(Comparator.naturalOrder());
    int nDur = durations.size();
    double durSum = 0;
    for (double d : durations) {
      durSum += d;
    }
    int nCallees = callees.size();
    int callbacks = 0;
    for (String c : callees) {
      callbacks += c != null && w.callers.containsKey(c) ? 1 : 0;
    }
    int nGaps = Math.max(n - 1, 0);
    Double gapCv = null;
    if (nGaps >= 2) {
      double mean = s / nGaps;
      double var = Math.max(ss / nGaps - mean * mean, 0.0);
      gapCv = mean != 0 ? Math.sqrt(var) / mean : null;
    }
    Double median = null;
    if (nDur > 0) {
      median = (durations.get((nDur + 1) / 2 - 1) + durations.get((nDur + 2) / 2 - 1)) / 2;
    }
    out.add((double) nOut);
    if (isLong) {
      out.add((double) w.peakHour());
    }
    out.add(share(w.counts[N_ANSWERED], nOut));
    out.add((double) nCallees);
    out.add(nOut > 0 ? (double) nCallees / nOut : null);
    out.add(nCallees > 0 ? (double) nOut / nCallees : null);
    out.add(share(w.counts[N_SHORT], nAnswered));
    out.add(nDur > 0 ? durSum / nDur : null);
    out.add(median);
    out.add(nDur > 0 ? durations.get(nDur - 1) : null);
    out.add((double) w.counts[N_IN]);
    out.add(w.counts[N_IN] / (double) (nOut + 1));
    out.add(nCallees > 0 ? (double) callbacks / nCallees : null);
    out.add((double) w.counts[N_SMS]);
    out.add((double) w.cells.size());
    out.add((double) w.imeis.size());
    out.add(share(w.counts[N_NIGHT], nOut));
    if (isLong) {
      out.add((double) w.activeHours());
    }
    out.add(gapCv);
    out.add(n >= 2 ? (double) sequential / (n - 1) : null);
    for (int k = N_NIGHT + 1; k < COUNTS.length; k++) {
      out.add(share(w.counts[k], nOut));
    }
  }
}
