package simguard.bench;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
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
 * Per-SIM state kept by Spark in the JVM: each SIM's calls of the last 24 h by minute (a MapState
 * of minute to the minute's calls). Every minute a SIM called in during a micro-batch is a scoring
 * point, as of the minute's end. Per point, over the 24 h and 1 h windows that end there: the calls
 * counted and the distinct callees of the whole window (sliding counts), and from the window's
 * newest MAX_CALLS calls in time order the duration median, mean and maximum, the short-call
 * share, the gaps' coefficient of variation, the share of calls to the number after the last
 * callee, and the distinct callees. Input rows: entity, t (epoch seconds), duration_s, b_number.
 */
public final class SimWindows {
  private static final long DAY = 86400L;
  private static final long HOUR = 3600L;
  private static final int MAX_CALLS = 200;
  private static final double SHORT_S = 10.0;

  private SimWindows() {}

  /** One minute of a SIM's calls, each call's time, duration and callee. */
  public static class Minute implements Serializable {
    private static final long serialVersionUID = 1L;
    private List<Double> times = new ArrayList<>();
    private List<Double> durations = new ArrayList<>();
    private List<String> callees = new ArrayList<>();

    public List<Double> getTimes() { return times; }
    public void setTimes(List<Double> times) { this.times = times; }
    public List<Double> getDurations() { return durations; }
    public void setDurations(List<Double> durations) { this.durations = durations; }
    public List<String> getCallees() { return callees; }
    public void setCallees(List<String> callees) { this.callees = callees; }
  }

  /** Features of a window's newest calls (times ascending). */
  static double[] newest(List<double[]> calls, List<String> callees) {
    int n = calls.size();
    if (n == 0) {
      return new double[7];
    }
    double[] durations = new double[n];
    double sum = 0, max = 0, shortCalls = 0, gapSum = 0, gapSq = 0, sequential = 0;
    for (int i = 0; i < n; i++) {
      double d = calls.get(i)[1];
      durations[i] = d;
      sum += d;
      max = Math.max(max, d);
      shortCalls += d < SHORT_S ? 1 : 0;
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
                         new HashSet<>(callees).size()};
  }

  static long suffix(String number) {
    return Long.parseLong(number.substring(Math.max(number.length() - 7, 1)));
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
        m.callees.add(r.getString(3));
        points.add(minute);
      }
      for (Long minute : points) {
        minutes.updateValue(minute, all.get(minute));
      }
      // the counts slide over the minutes in order (calls entering and leaving each window); the
      // newest calls are read back from the point's minute
      List<Map.Entry<Long, Minute>> ordered = new ArrayList<>(all.entrySet());
      Map<String, Integer> callees = new HashMap<>();
      int in24 = 0, out24 = 0, out1 = 0;
      long n24 = 0, n1 = 0;
      List<Point> out = new ArrayList<>();
      for (long minute : points) {
        long asOf = minute + 60;
        for (; in24 < ordered.size() && ordered.get(in24).getKey() < asOf; in24++) {
          Minute m = ordered.get(in24).getValue();
          n24 += m.times.size();
          n1 += m.times.size();
          for (String c : m.callees) {
            callees.merge(c, 1, Integer::sum);
          }
        }
        for (; out24 < in24 && ordered.get(out24).getKey() < asOf - DAY; out24++) {
          Minute m = ordered.get(out24).getValue();
          n24 -= m.times.size();
          for (String c : m.callees) {
            callees.computeIfPresent(c, (k, v) -> v == 1 ? null : v - 1);
          }
        }
        for (; out1 < in24 && ordered.get(out1).getKey() < asOf - HOUR; out1++) {
          n1 -= ordered.get(out1).getValue().times.size();
        }
        // the newest MAX_CALLS calls of the 24 h window, newest first
        List<double[]> calls = new ArrayList<>();
        List<String> numbers = new ArrayList<>();
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
            calls.add(new double[] {m.times.get(i), m.durations.get(i), suffix(m.callees.get(i))});
            numbers.add(m.callees.get(i));
            inHour += e.getKey() >= asOf - HOUR ? 1 : 0;
          }
        }
        Collections.reverse(calls);
        Collections.reverse(numbers);
        int from = calls.size() - inHour;
        out.add(new Point(key, asOf, n24, callees.size(), newest(calls, numbers), n1,
                          newest(calls.subList(from, calls.size()), numbers.subList(from, numbers.size()))));
      }
      long newestMinute = all.lastKey();
      for (Long minute : all.headMap(newestMinute - DAY).keySet()) {
        minutes.removeKey(minute);
      }
      return CollectionConverters.asScala(out.iterator());
    }
  }

  /** A SIM's windows as of the end of a minute it called in (the newest calls' features in the
   * order of {@link #newest}: median, mean, max, short share, gap CV, sequential share, callees). */
  public static class Point implements Serializable {
    private static final long serialVersionUID = 1L;
    private String entity;
    private long asOf;
    private long n24h;
    private long callees24h;
    private List<Double> newest24h;
    private long n1h;
    private List<Double> newest1h;

    public Point() {}

    Point(String entity, long asOf, long n24h, long callees24h, double[] newest24h, long n1h, double[] newest1h) {
      this.entity = entity;
      this.asOf = asOf;
      this.n24h = n24h;
      this.callees24h = callees24h;
      this.newest24h = Arrays.stream(newest24h).boxed().toList();
      this.n1h = n1h;
      this.newest1h = Arrays.stream(newest1h).boxed().toList();
    }

    public String getEntity() { return entity; }
    public void setEntity(String entity) { this.entity = entity; }
    public long getAsOf() { return asOf; }
    public void setAsOf(long asOf) { this.asOf = asOf; }
    public long getN24h() { return n24h; }
    public void setN24h(long n24h) { this.n24h = n24h; }
    public long getCallees24h() { return callees24h; }
    public void setCallees24h(long callees24h) { this.callees24h = callees24h; }
    public List<Double> getNewest24h() { return newest24h; }
    public void setNewest24h(List<Double> newest24h) { this.newest24h = newest24h; }
    public long getN1h() { return n1h; }
    public void setN1h(long n1h) { this.n1h = n1h; }
    public List<Double> getNewest1h() { return newest1h; }
    public void setNewest1h(List<Double> newest1h) { this.newest1h = newest1h; }
  }

  /** The scoring points of each SIM a micro-batch of ``events`` touches (one per minute it called
   * in), as (entity, as_of, n_24h, callees_24h, newest_24h, n_1h, newest_1h). */
  public static Dataset<Row> apply(Dataset<Row> events) {
    return events
        .groupByKey((MapFunction<Row, String>) r -> r.getString(0), Encoders.STRING())
        .transformWithState(new Processor(), TimeMode.None(), OutputMode.Update(), Encoders.bean(Point.class))
        .select("entity", "asOf", "n24h", "callees24h", "newest24h", "n1h", "newest1h")
        .toDF("entity", "as_of", "n_24h", "callees_24h", "newest_24h", "n_1h", "newest_1h");
  }
}
