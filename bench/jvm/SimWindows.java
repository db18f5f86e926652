package simguard.bench;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.MapState;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;

import scala.jdk.javaapi.CollectionConverters;

/**
 * Per-SIM state kept by Spark in the JVM: each SIM's events of the last 24 h by minute (a MapState
 * of minute to the minute's events: calls and SMS it made and calls it received). Every minute a
 * SIM had an event in during a micro-batch is a scoring point, as of the minute's end. Per point,
 * over the 24 h and 1 h windows that end there ({@link #FEATURES}): counts by kind and distinct
 * callees, cells and IMEIs (sliding over the minutes), the busiest clock hour and the hours
 * active, and from the window's newest MAX_CALLS calls out in time order the duration median,
 * mean and maximum, the short-call share, the gaps' coefficient of variation, the share of calls
 * to the number after the last callee, the distinct callees and the share of callees that called
 * the SIM in the window. Input rows: entity, t (epoch seconds), duration_s, b_number (the other
 * party), out, answered, sms, night, cell, imei ("" when unknown).
 */
public final class SimWindows {
  private static final long DAY = 86400L;
  private static final long HOUR = 3600L;
  private static final int MAX_CALLS = 200;
  private static final double SHORT_S = 10.0;
  static final int OUT = 1, ANSWERED = 2, SMS = 4, NIGHT = 8;
  /** The values of each window, in order. */
  public static final String[] FEATURES = {
    "calls_out", "calls_in", "answered_out", "sms_out", "night_out", "distinct_parties", "distinct_cells",
    "distinct_imeis", "peak_hour_out", "active_hours", "duration_median", "duration_mean", "duration_max",
    "short_share", "gap_cv", "sequential_share", "distinct_callees_newest", "callback_share"};

  private SimWindows() {}

  /** One minute of a SIM's events. */
  public static class Minute implements Serializable {
    private static final long serialVersionUID = 1L;
    private List<Double> times = new ArrayList<>();
    private List<Double> durations = new ArrayList<>();
    private List<String> parties = new ArrayList<>();
    private List<Integer> flags = new ArrayList<>();
    private List<String> cells = new ArrayList<>();
    private List<String> imeis = new ArrayList<>();

    public List<Double> getTimes() { return times; }
    public void setTimes(List<Double> times) { this.times = times; }
    public List<Double> getDurations() { return durations; }
    public void setDurations(List<Double> durations) { this.durations = durations; }
    public List<String> getParties() { return parties; }
    public void setParties(List<String> parties) { this.parties = parties; }
    public List<Integer> getFlags() { return flags; }
    public void setFlags(List<Integer> flags) { this.flags = flags; }
    public List<String> getCells() { return cells; }
    public void setCells(List<String> cells) { this.cells = cells; }
    public List<String> getImeis() { return imeis; }
    public void setImeis(List<String> imeis) { this.imeis = imeis; }
  }

  /** Counts that slide over a window's minutes: events in, events out. */
  static final class Sliding {
    final long[] counts = new long[5];  // calls out, calls in, answered out, sms out, night out
    final Map<String, Integer> parties = new HashMap<>();
    final Map<String, Integer> inParties = new HashMap<>();
    final Map<String, Integer> cells = new HashMap<>();
    final Map<String, Integer> imeis = new HashMap<>();
    final Map<Long, Long> hoursOut = new HashMap<>();
    final Map<Long, Long> hours = new HashMap<>();

    static void count(Map<String, Integer> m, String k, int d) {
      if (!k.isEmpty()) {
        m.merge(k, d, (a, b) -> a + b == 0 ? null : a + b);
      }
    }

    static void count(Map<Long, Long> m, long k, long d) {
      m.merge(k, d, (a, b) -> a + b == 0 ? null : a + b);
    }

    void add(long minute, Minute m, int d) {
      for (int i = 0; i < m.times.size(); i++) {
        int f = m.flags.get(i);
        boolean out = (f & OUT) != 0, sms = (f & SMS) != 0;
        counts[0] += out && !sms ? d : 0;
        counts[1] += !out && !sms ? d : 0;
        counts[2] += out && !sms && (f & ANSWERED) != 0 ? d : 0;
        counts[3] += out && sms ? d : 0;
        counts[4] += out && (f & NIGHT) != 0 ? d : 0;
        count(parties, m.parties.get(i), d);
        if (!out) {
          count(inParties, m.parties.get(i), d);
        }
        count(cells, m.cells.get(i), d);
        count(imeis, m.imeis.get(i), d);
        if (out && !sms) {
          count(hoursOut, minute / HOUR, d);
        }
        count(hours, minute / HOUR, d);
      }
    }

    double[] values() {
      long peak = 0;
      for (long n : hoursOut.values()) {
        peak = Math.max(peak, n);
      }
      return new double[] {counts[0], counts[1], counts[2], counts[3], counts[4], parties.size(), cells.size(),
                           imeis.size(), peak, hours.size()};
    }
  }

  /** Features of a window's newest calls out (times ascending), given who called the SIM. */
  static double[] newest(List<double[]> calls, List<String> callees, Set<String> callers) {
    int n = calls.size();
    if (n == 0) {
      return new double[8];
    }
    double[] durations = new double[n];
    double sum = 0, max = 0, shortCalls = 0, gapSum = 0, gapSq = 0, sequential = 0, callbacks = 0;
    for (int i = 0; i < n; i++) {
      double d = calls.get(i)[1];
      durations[i] = d;
      sum += d;
      max = Math.max(max, d);
      shortCalls += d < SHORT_S ? 1 : 0;
      callbacks += callers.contains(callees.get(i)) ? 1 : 0;
      if (i > 0) {
        double gap = calls.get(i)[0] - calls.get(i - 1)[0];
        gapSum += gap;
        gapSq += gap * gap;
        sequential += Math.abs(calls.get(i)[2] - calls.get(i - 1)[2]) == 1 ? 1 : 0;
      }
    }
    Arrays.sort(durations);
    double median = n % 2 == 1 ? durations[n / 2] : (durations[n / 2 - 1] + durations[n / 2]) / 2;
    double gapCv = 0;
    if (n > 2 && gapSum > 0) {
      double mean = gapSum / (n - 1);
      gapCv = Math.sqrt(Math.max(gapSq / (n - 1) - mean * mean, 0)) / mean;
    }
    return new double[] {median, sum / n, max, shortCalls / n, gapCv, n > 1 ? sequential / (n - 1) : 0,
                         new HashSet<>(callees).size(), callbacks / n};
  }

  static long suffix(String number) {
    return Long.parseLong(number.substring(Math.max(number.length() - 7, 1)));
  }

  static List<Double> join(double[] a, double[] b) {
    List<Double> out = new ArrayList<>(a.length + b.length);
    for (double v : a) {
      out.add(v);
    }
    for (double v : b) {
      out.add(v);
    }
    return out;
  }

  static final class Processor extends StatefulProcessor<String, Row, Point> {
    private static final long serialVersionUID = 1L;
    private transient MapState<Long, Minute> minutes;

    @Override
    public void init(OutputMode outputMode, TimeMode timeMode) {
      minutes = getHandle().getMapState("minutes", Encoders.LONG(), Encoders.bean(Minute.class), TTLConfig.NONE());
    }

    @Override
    public scala.collection.Iterator<Point> handleInputRows(String key, scala.collection.Iterator<Row> rows,
                                                            TimerValues timerValues) {
      TreeMap<Long, Minute> all = new TreeMap<>();
      Iterator<scala.Tuple2<Long, Minute>> stored = CollectionConverters.asJava(minutes.iterator());
      while (stored.hasNext()) {
        scala.Tuple2<Long, Minute> e = stored.next();
        all.put(e._1(), e._2());
      }
      TreeSet<Long> points = new TreeSet<>();
      while (rows.hasNext()) {
        Row r = rows.next();
        long minute = (long) Math.floor(r.getDouble(1) / 60) * 60;
        Minute m = all.computeIfAbsent(minute, k -> new Minute());
        m.times.add(r.getDouble(1));
        m.durations.add(r.getDouble(2));
        m.parties.add(r.getString(3));
        m.flags.add((r.getBoolean(4) ? OUT : 0) | (r.getBoolean(5) ? ANSWERED : 0) | (r.getBoolean(6) ? SMS : 0)
                    | (r.getBoolean(7) ? NIGHT : 0));
        m.cells.add(r.getString(8));
        m.imeis.add(r.getString(9));
        points.add(minute);
      }
      for (Long minute : points) {
        minutes.updateValue(minute, all.get(minute));
      }
      // the counts slide over the minutes in order (events entering and leaving each window); the
      // newest calls are read back from the point's minute
      List<Map.Entry<Long, Minute>> ordered = new ArrayList<>(all.entrySet());
      Sliding day = new Sliding(), hour = new Sliding();
      int in = 0, outDay = 0, outHour = 0;
      List<Point> out = new ArrayList<>();
      for (long minute : points) {
        long asOf = minute + 60;
        for (; in < ordered.size() && ordered.get(in).getKey() < asOf; in++) {
          day.add(ordered.get(in).getKey(), ordered.get(in).getValue(), 1);
          hour.add(ordered.get(in).getKey(), ordered.get(in).getValue(), 1);
        }
        for (; outDay < in && ordered.get(outDay).getKey() < asOf - DAY; outDay++) {
          day.add(ordered.get(outDay).getKey(), ordered.get(outDay).getValue(), -1);
        }
        for (; outHour < in && ordered.get(outHour).getKey() < asOf - HOUR; outHour++) {
          hour.add(ordered.get(outHour).getKey(), ordered.get(outHour).getValue(), -1);
        }
        // the newest MAX_CALLS calls out of the 24 h window, newest first
        List<double[]> calls = new ArrayList<>();
        List<String> callees = new ArrayList<>();
        int inHour = 0;
        for (Map.Entry<Long, Minute> e : all.headMap(asOf, false).descendingMap().entrySet()) {
          if (e.getKey() < asOf - DAY || calls.size() >= MAX_CALLS) {
            break;
          }
          Minute m = e.getValue();
          Integer[] order = new Integer[m.times.size()];
          for (int i = 0; i < order.length; i++) {
            order[i] = i;
          }
          Arrays.sort(order, (x, y) -> Double.compare(m.times.get(y), m.times.get(x)));
          for (int i : order) {
            if (calls.size() >= MAX_CALLS) {
              break;
            }
            if ((m.flags.get(i) & (OUT | SMS)) != OUT) {
              continue;
            }
            calls.add(new double[] {m.times.get(i), m.durations.get(i), suffix(m.parties.get(i))});
            callees.add(m.parties.get(i));
            inHour += e.getKey() >= asOf - HOUR ? 1 : 0;
          }
        }
        Collections.reverse(calls);
        Collections.reverse(callees);
        int from = calls.size() - inHour;
        out.add(new Point(key, asOf,
            join(day.values(), newest(calls, callees, day.inParties.keySet())),
            join(hour.values(), newest(calls.subList(from, calls.size()), callees.subList(from, callees.size()),
                                       hour.inParties.keySet()))));
      }
      long newestMinute = all.lastKey();
      for (Long minute : all.headMap(newestMinute - DAY).keySet()) {
        minutes.removeKey(minute);
      }
      return CollectionConverters.asScala(out.iterator());
    }
  }

  /** A SIM's windows as of the end of a minute it had an event in: {@link #FEATURES} of each. */
  public static class Point implements Serializable {
    private static final long serialVersionUID = 1L;
    private String entity;
    private long asOf;
    private List<Double> day;
    private List<Double> hour;

    public Point() {}

    Point(String entity, long asOf, List<Double> day, List<Double> hour) {
      this.entity = entity;
      this.asOf = asOf;
      this.day = day;
      this.hour = hour;
    }

    public String getEntity() { return entity; }
    public void setEntity(String entity) { this.entity = entity; }
    public long getAsOf() { return asOf; }
    public void setAsOf(long asOf) { this.asOf = asOf; }
    public List<Double> getDay() { return day; }
    public void setDay(List<Double> day) { this.day = day; }
    public List<Double> getHour() { return hour; }
    public void setHour(List<Double> hour) { this.hour = hour; }
  }

  /** The scoring points of each SIM a micro-batch of ``events`` touches (one per minute it had an
   * event in), as (entity, as_of, w_24h, w_1h): {@link #FEATURES} of each window. */
  public static Dataset<Row> apply(Dataset<Row> events) {
    return events
        .groupByKey((MapFunction<Row, String>) r -> r.getString(0), Encoders.STRING())
        .transformWithState(new Processor(), TimeMode.None(), OutputMode.Update(), Encoders.bean(Point.class))
        .select("entity", "asOf", "day", "hour")
        .toDF("entity", "as_of", "w_24h", "w_1h");
  }
}
