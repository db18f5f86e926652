package simguard.bench;

import java.io.Serializable;
import java.util.ArrayList;
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
 * of minute to count, duration and callees). Every minute a SIM called in during a micro-batch is
 * a scoring point: its 24 h and 1 h windows end at the minute's end. Input rows: entity, t (epoch
 * seconds), duration_s, b_number; output: entity, as_of, calls in 24 h, distinct callees in 24 h,
 * calls in 1 h.
 */
public final class SimWindows {
  private static final long DAY = 86400L;
  private static final long HOUR = 3600L;

  private SimWindows() {}

  /** One minute of a SIM's calls. */
  public static class Minute implements Serializable {
    private long calls;
    private double durationS;
    private List<String> callees = new ArrayList<>();

    public long getCalls() { return calls; }
    public void setCalls(long calls) { this.calls = calls; }
    public double getDurationS() { return durationS; }
    public void setDurationS(double durationS) { this.durationS = durationS; }
    public List<String> getCallees() { return callees; }
    public void setCallees(List<String> callees) { this.callees = callees; }
  }

  static final class Processor extends StatefulProcessor<String, Row, Point> {
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
        m.calls += 1;
        m.durationS += r.getDouble(2);
        m.callees.add(r.getString(3));
        points.add(minute);
      }
      for (Long minute : points) {
        minutes.updateValue(minute, all.get(minute));
      }
      // each minute the SIM called in is a scoring point, as of the minute's end: the 24 h and
      // 1 h windows slide over the minutes in order (calls entering and leaving each window)
      List<Map.Entry<Long, Minute>> ordered = new ArrayList<>(all.entrySet());
      Map<String, Integer> callees = new HashMap<>();
      int in24 = 0, out24 = 0, out1 = 0;
      long n24 = 0, n1 = 0;
      List<Point> out = new ArrayList<>();
      for (long minute : points) {
        long asOf = minute + 60;
        for (; in24 < ordered.size() && ordered.get(in24).getKey() < asOf; in24++) {
          Minute m = ordered.get(in24).getValue();
          n24 += m.calls;
          n1 += m.calls;
          for (String c : m.callees) {
            callees.merge(c, 1, Integer::sum);
          }
        }
        for (; out24 < in24 && ordered.get(out24).getKey() < asOf - DAY; out24++) {
          Minute m = ordered.get(out24).getValue();
          n24 -= m.calls;
          for (String c : m.callees) {
            callees.computeIfPresent(c, (k, v) -> v == 1 ? null : v - 1);
          }
        }
        for (; out1 < in24 && ordered.get(out1).getKey() < asOf - HOUR; out1++) {
          n1 -= ordered.get(out1).getValue().calls;
        }
        out.add(new Point(key, asOf, n24, callees.size(), n1));
      }
      long newest = all.lastKey();
      for (Long minute : all.headMap(newest - DAY).keySet()) {
        minutes.removeKey(minute);
      }
      return CollectionConverters.asScala(out.iterator());
    }
  }

  /** A SIM's windows as of the end of a minute it called in. */
  public static class Point implements Serializable {
    private String entity;
    private long asOf;
    private long n24h;
    private long callees24h;
    private long n1h;

    public Point() {}

    Point(String entity, long asOf, long n24h, long callees24h, long n1h) {
      this.entity = entity;
      this.asOf = asOf;
      this.n24h = n24h;
      this.callees24h = callees24h;
      this.n1h = n1h;
    }

    public String getEntity() { return entity; }
    public void setEntity(String entity) { this.entity = entity; }
    public long getAsOf() { return asOf; }
    public void setAsOf(long asOf) { this.asOf = asOf; }
    public long getN24h() { return n24h; }
    public void setN24h(long n24h) { this.n24h = n24h; }
    public long getCallees24h() { return callees24h; }
    public void setCallees24h(long callees24h) { this.callees24h = callees24h; }
    public long getN1h() { return n1h; }
    public void setN1h(long n1h) { this.n1h = n1h; }
  }

  /** The scoring points of each SIM a micro-batch of ``events`` touches (one per minute it called in),
   * as (entity, as_of, n_24h, callees_24h, n_1h). */
  public static Dataset<Row> apply(Dataset<Row> events) {
    return events
        .groupByKey((MapFunction<Row, String>) r -> r.getString(0), Encoders.STRING())
        .transformWithState(new Processor(), TimeMode.None(), OutputMode.Update(), Encoders.bean(Point.class))
        .select("entity", "asOf", "n24h", "callees24h", "n1h")
        .toDF("entity", "as_of", "n_24h", "callees_24h", "n_1h");
  }
}
