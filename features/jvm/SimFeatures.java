package simguard.features;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
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
 * The per-SIM features as of each scoring point, with each SIM's events of the last window kept by
 * Spark's state store (a {@code MapState} of sub-bucket to its events), run by
 * {@code transformWithState} on a stream or once over a batch. The definitions are those of
 * {@code features/sim.py}: see {@code features/sim_state.py}, which prepares the events (one per
 * CDR side, with its flags and cross-SIM context) and names the values.
 *
 * <p>A SIM is scored at the end of every scoring interval in which it called or sent an SMS. The
 * long window is the whole hours before the point's hour and that hour's sub-buckets before the
 * point; the short window is the sub-buckets in {@code shortS} before the point. Counts use every
 * event; the call-list values (durations, gaps, sequential dialling, distinct callees, call-backs)
 * use the window's newest {@code maxCalls} calls out, in the order Spark sorts the call structs.
 */
public final class SimFeatures {
  static final int OUT = 1, VOICE = 2, SMS = 4, ANSWERED = 8, SHORT = 16, NIGHT = 32, INTL = 64, PREMIUM = 128,
      ONNET = 256, GATEWAY = 512, CANCELLED = 1024;
  /** An event of a warm start (the days before the stream's first record): kept, never a point. */
  static final int WARM = 2048;
  private static final long HOUR = 3600L;

  private SimFeatures() {}

  /** Window lengths and thresholds (features.settings.FeatureSettings). */
  public static final class Settings implements Serializable {
    private static final long serialVersionUID = 1L;
    final long windowS, shortS, subS, stepS;
    final int maxCalls, evidenceCalls;
    final long sequentialMaxStep;

    public Settings(long windowS, long shortS, long subS, long stepS, int maxCalls, int evidenceCalls,
                    long sequentialMaxStep) {
      this.windowS = windowS;
      this.shortS = shortS;
      this.subS = subS;
      this.stepS = stepS;
      this.maxCalls = maxCalls;
      this.evidenceCalls = evidenceCalls;
      this.sequentialMaxStep = sequentialMaxStep;
    }
  }

  /** One sub-bucket of a SIM's events, in the order of {@link #ORDER}: parallel lists. */
  public static class Bucket implements Serializable {
    private static final long serialVersionUID = 1L;
    private List<Double> t = new ArrayList<>();
    private List<Integer> flags = new ArrayList<>();
    private List<String> party = new ArrayList<>();
    private List<Long> digits = new ArrayList<>();
    private List<Double> duration = new ArrayList<>();
    private List<String> cause = new ArrayList<>();
    private List<String> cell = new ArrayList<>();
    private List<String> imei = new ArrayList<>();
    private List<Integer> cohort = new ArrayList<>();
    private List<Integer> shared = new ArrayList<>();

    public List<Double> getT() { return t; }
    public void setT(List<Double> v) { t = v; }
    public List<Integer> getFlags() { return flags; }
    public void setFlags(List<Integer> v) { flags = v; }
    public List<String> getParty() { return party; }
    public void setParty(List<String> v) { party = v; }
    public List<Long> getDigits() { return digits; }
    public void setDigits(List<Long> v) { digits = v; }
    public List<Double> getDuration() { return duration; }
    public void setDuration(List<Double> v) { duration = v; }
    public List<String> getCause() { return cause; }
    public void setCause(List<String> v) { cause = v; }
    public List<String> getCell() { return cell; }
    public void setCell(List<String> v) { cell = v; }
    public List<String> getImei() { return imei; }
    public void setImei(List<String> v) { imei = v; }
    public List<Integer> getCohort() { return cohort; }
    public void setCohort(List<Integer> v) { cohort = v; }
    public List<Integer> getShared() { return shared; }
    public void setShared(List<Integer> v) { shared = v; }

    int size() { return t.size(); }

    boolean is(int i, int mask) { return (flags.get(i) & mask) == mask; }

    Double answered(int i) { return is(i, ANSWERED) ? duration.get(i) : null; }

    void add(SimContext.Event e, Integer cohortCount, Integer sharedCount) {
      t.add(e.getT());
      flags.add(e.getFlags());
      party.add(e.getParty());
      digits.add(e.getDigits());
      duration.add(e.getDuration());
      cause.add(e.getCause());
      cell.add(e.getCell());
      imei.add(e.getImei());
      cohort.add(cohortCount);
      shared.add(sharedCount);
    }

    /** Sets the count a correction row ({@link SimContext.Event#correction}) gives to the events
     * out at its cell or IMEI; whether any changed. */
    boolean recount(SimContext.Event c) {
      boolean cellKind = "cell".equals(c.getKind());
      List<Integer> counts = cellKind ? cohort : shared;
      String at = cellKind ? c.getCell() : c.getImei();
      boolean changed = false;
      for (int i = 0; i < size(); i++) {
        String here = cellKind ? cell.get(i) : imei.get(i);
        if (is(i, OUT) && at.equals(here) && !c.getCount().equals(counts.get(i))) {
          counts.set(i, c.getCount());
          changed = true;
        }
      }
      return changed;
    }

    /** Puts the events in the order Spark sorts call structs (t, b_digits, answered_s, b_number,
     * duration_s, release_cause, cell_id, a_imei; nulls first). */
    void sort() {
      Integer[] order = new Integer[size()];
      for (int i = 0; i < order.length; i++) {
        order[i] = i;
      }
      Arrays.sort(order, ORDER.apply(this));
      t = pick(t, order);
      flags = pick(flags, order);
      party = pick(party, order);
      digits = pick(digits, order);
      duration = pick(duration, order);
      cause = pick(cause, order);
      cell = pick(cell, order);
      imei = pick(imei, order);
      cohort = pick(cohort, order);
      shared = pick(shared, order);
    }

    private static <T> List<T> pick(List<T> from, Integer[] order) {
      List<T> out = new ArrayList<>(order.length);
      for (int i : order) {
        out.add(from.get(i));
      }
      return out;
    }
  }

  interface OrderOf {
    Comparator<Integer> apply(Bucket b);
  }

  static <T extends Comparable<T>> int nullsFirst(T x, T y) {
    if (x == null || y == null) {
      return x == null ? (y == null ? 0 : -1) : 1;
    }
    return x.compareTo(y);
  }

  static final OrderOf ORDER = b -> (i, j) -> {
    int c = Double.compare(b.t.get(i), b.t.get(j));
    if (c == 0) c = nullsFirst(b.digits.get(i), b.digits.get(j));
    if (c == 0) c = nullsFirst(b.answered(i), b.answered(j));
    if (c == 0) c = nullsFirst(b.party.get(i), b.party.get(j));
    if (c == 0) c = nullsFirst(b.duration.get(i), b.duration.get(j));
    if (c == 0) c = nullsFirst(b.cause.get(i), b.cause.get(j));
    if (c == 0) c = nullsFirst(b.cell.get(i), b.cell.get(j));
    if (c == 0) c = nullsFirst(b.imei.get(i), b.imei.get(j));
    return c;
  };


  /** A call out of a window's newest, with what an analyst sees of it. */
  public static class Call implements Serializable {
    private static final long serialVersionUID = 1L;
    private double t;
    private Long digits;
    private Double answered;
    private String number;
    private Double duration;
    private String cause;
    private String cell;
    private String imei;

    public Call() {}

    Call(Bucket b, int i) {
      t = b.t.get(i);
      digits = b.digits.get(i);
      answered = b.answered(i);
      number = b.party.get(i);
      duration = b.duration.get(i);
      cause = b.cause.get(i);
      cell = b.cell.get(i);
      imei = b.imei.get(i);
    }

    public double getT() { return t; }
    public void setT(double v) { t = v; }
    public Long getDigits() { return digits; }
    public void setDigits(Long v) { digits = v; }
    public Double getAnswered() { return answered; }
    public void setAnswered(Double v) { answered = v; }
    public String getNumber() { return number; }
    public void setNumber(String v) { number = v; }
    public Double getDuration() { return duration; }
    public void setDuration(Double v) { duration = v; }
    public String getCause() { return cause; }
    public void setCause(String v) { cause = v; }
    public String getCell() { return cell; }
    public void setCell(String v) { cell = v; }
    public String getImei() { return imei; }
    public void setImei(String v) { imei = v; }
  }


  static final class Processor extends StatefulProcessor<String, SimContext.Event, Point> {
    private static final long serialVersionUID = 1L;
    private final Settings cfg;
    private transient MapState<Long, Bucket> buckets;

    Processor(Settings cfg) {
      this.cfg = cfg;
    }

    @Override
    public void init(OutputMode outputMode, TimeMode timeMode) {
      buckets = getHandle().getMapState("buckets", Encoders.LONG(), Encoders.bean(Bucket.class), TTLConfig.NONE());
    }

    @Override
    public scala.collection.Iterator<Point> handleInputRows(String key,
                                                            scala.collection.Iterator<SimContext.Event> rows,
                                                            TimerValues timerValues) {
      TreeMap<Long, Bucket> all = new TreeMap<>();
      Iterator<scala.Tuple2<Long, Bucket>> stored = CollectionConverters.asJava(buckets.iterator());
      while (stored.hasNext()) {
        scala.Tuple2<Long, Bucket> e = stored.next();
        all.put(e._1(), e._2());
      }
      // an event comes as one row per context kind (SimContext): its cell's count and its IMEI's
      Map<String, SimContext.Event> events = new LinkedHashMap<>();
      Map<String, Integer> cohorts = new HashMap<>(), shareds = new HashMap<>();
      TreeSet<Long> touched = new TreeSet<>();
      while (rows.hasNext()) {
        SimContext.Event r = rows.next();
        if ((r.getFlags() & SimContext.CORRECTION) != 0) {
          long bucket = (long) Math.floor(r.getT() / cfg.subS) * cfg.subS;
          if (all.containsKey(bucket) && all.get(bucket).recount(r)) {
            touched.add(bucket);
          }
          continue;
        }
        events.putIfAbsent(r.getEid(), r);
        if ("cell".equals(r.getKind())) {
          cohorts.put(r.getEid(), r.getCount());
        } else if ("imei".equals(r.getKind())) {
          shareds.put(r.getEid(), r.getCount());
        }
      }
      TreeSet<Long> points = new TreeSet<>();
      for (SimContext.Event r : events.values()) {
        long bucket = (long) Math.floor(r.getT() / cfg.subS) * cfg.subS;
        all.computeIfAbsent(bucket, k -> new Bucket()).add(r, cohorts.get(r.getEid()), shareds.get(r.getEid()));
        touched.add(bucket);
        int f = r.getFlags();
        if ((f & OUT) != 0 && (f & (VOICE | SMS)) != 0 && (f & WARM) == 0) {
          points.add((Math.floorDiv(bucket, cfg.stepS) + 1) * cfg.stepS);
        }
      }
      for (long bucket : touched) {
        Bucket b = all.get(bucket);
        b.sort();
        buckets.updateValue(bucket, b);
      }
      if (all.isEmpty()) {
        return CollectionConverters.asScala(new ArrayList<Point>().iterator());
      }
      List<Point> out = emit(key, all, points);
      long keepFrom = Math.floorDiv(all.lastKey(), HOUR) * HOUR - cfg.windowS;
      for (Long bucket : all.headMap(keepFrom).keySet()) {
        buckets.removeKey(bucket);
      }
      return CollectionConverters.asScala(out.iterator());
    }

    /** The points in ascending order, the windows sliding over the sub-buckets. */
    List<Point> emit(String key, TreeMap<Long, Bucket> all, TreeSet<Long> points) {
      List<Map.Entry<Long, Bucket>> ordered = new ArrayList<>(all.entrySet());
      SimWindow day = new SimWindow(), hour = new SimWindow();
      SimWindow.SlidingMax cohort = new SimWindow.SlidingMax(), shared = new SimWindow.SlidingMax();
      int in = 0, outDay = 0, outHour = 0;
      List<Point> out = new ArrayList<>();
      long hours = cfg.windowS / HOUR - 1;
      for (long asOf : points) {
        long from = Math.floorDiv(asOf, HOUR) * HOUR - hours * HOUR;
        for (; in < ordered.size() && ordered.get(in).getKey() < asOf; in++) {
          long bucket = ordered.get(in).getKey();
          Bucket b = ordered.get(in).getValue();
          day.add(bucket, b, 1);
          hour.add(bucket, b, 1);
          cohort.add(bucket, SimWindow.max(b.cohort));
          shared.add(bucket, SimWindow.max(b.shared));
        }
        for (; outDay < in && ordered.get(outDay).getKey() < from; outDay++) {
          day.add(ordered.get(outDay).getKey(), ordered.get(outDay).getValue(), -1);
        }
        for (; outHour < in && ordered.get(outHour).getKey() < asOf - cfg.shortS; outHour++) {
          hour.add(ordered.get(outHour).getKey(), ordered.get(outHour).getValue(), -1);
        }
        cohort.dropBefore(from);
        shared.dropBefore(from);
        // the long window's newest calls out, newest first, then in time order
        List<Call> calls = new ArrayList<>();
        int inShort = 0;
        for (Map.Entry<Long, Bucket> e : all.headMap(asOf, false).descendingMap().entrySet()) {
          if (e.getKey() < from || calls.size() >= cfg.maxCalls) {
            break;
          }
          Bucket b = e.getValue();
          for (int i = b.size() - 1; i >= 0 && calls.size() < cfg.maxCalls; i--) {
            if (b.is(i, OUT | VOICE)) {
              calls.add(new Call(b, i));
              inShort += e.getKey() >= asOf - cfg.shortS ? 1 : 0;
            }
          }
        }
        java.util.Collections.reverse(calls);
        List<Double> values = new ArrayList<>();
        SimWindow.values(values, day, calls, true, cfg.sequentialMaxStep);
        List<Call> newestShort = calls.subList(calls.size() - inShort, calls.size());
        SimWindow.values(values, hour, newestShort, false, cfg.sequentialMaxStep);
        Long cohortPeak = cohort.max(), sharedPeak = shared.max();
        values.add(sharedPeak == null ? 0.0 : (double) sharedPeak);
        values.add(cohortPeak == null ? 0.0 : (double) cohortPeak);
        long first = all.ceilingKey(from);
        values.add((asOf - first) / 3600.0);
        List<Call> recent = new ArrayList<>(calls.subList(Math.max(calls.size() - cfg.evidenceCalls, 0), calls.size()));
        out.add(new Point(key, asOf, values, recent));
      }
      return out;
    }
  }

  /** A SIM's values as of a scoring point, and the long window's newest calls (evidence). */
  public static class Point implements Serializable {
    private static final long serialVersionUID = 1L;
    private String entity;
    private double asOf;
    private List<Double> values;
    private List<Call> recent;

    public Point() {}

    Point(String entity, double asOf, List<Double> values, List<Call> recent) {
      this.entity = entity;
      this.asOf = asOf;
      this.values = values;
      this.recent = recent;
    }

    public String getEntity() { return entity; }
    public void setEntity(String v) { entity = v; }
    public double getAsOf() { return asOf; }
    public void setAsOf(double v) { asOf = v; }
    public List<Double> getValues() { return values; }
    public void setValues(List<Double> v) { values = v; }
    public List<Call> getRecent() { return recent; }
    public void setRecent(List<Call> v) { recent = v; }
  }

  /**
   * The scoring points of every SIM the events touch: (entity, as_of, values, recent). The events
   * first get their cross-SIM context ({@link SimContext}, keyed by cell or IMEI), then the
   * features (keyed by SIM), in the same micro-batch. Input columns in order: entity, t, flags,
   * party, b_digits, duration_s, release_cause, cell_id, a_imei, eid (one per CDR side), kind and
   * key (one row per context kind of the event; see features/sim_state.py).
   */
  public static Dataset<Row> apply(Dataset<Row> events, int windowS, int shortS, int subS, int stepS, int cohortS,
                                   int maxCalls, int evidenceCalls, int sequentialMaxStep) {
    Settings settings = new Settings(windowS, shortS, subS, stepS, maxCalls, evidenceCalls, sequentialMaxStep);
    Dataset<SimContext.Event> withContext = events
        .groupByKey((MapFunction<Row, String>) r -> r.getString(SimContext.KEY), Encoders.STRING())
        .transformWithState(new SimContext(subS, cohortS, windowS), TimeMode.None(), OutputMode.Append(),
                            Encoders.bean(SimContext.Event.class));
    return withContext
        .groupByKey((MapFunction<SimContext.Event, String>) SimContext.Event::getEntity, Encoders.STRING())
        .transformWithState(new Processor(settings), TimeMode.None(), OutputMode.Append(), Encoders.bean(Point.class))
        .select("entity", "asOf", "values", "recent")
        .toDF("entity", "as_of", "values", "recent");
  }
}
