
set terminal pngcairo size 900,560 font 'DejaVu Sans,10'
set output 'fanout.png'
set title 'S2 room fan-out at saturation: deliveries/s vs room size'
set logscale xy
set xlabel 'members per room (every member sending)'
set ylabel 'deliveries per second'
set xtics (10, 100, 1000)
set xrange [8:1250]
set grid
set key top left
plot 'fanout.dat' using 1:2 with linespoints lw 2 title 'switchboard-1w', 'fanout.dat' using 1:3 with linespoints lw 2 title 'switchboard-2w', 'fanout.dat' using 1:4 with linespoints lw 2 title 'node-ws', 'fanout.dat' using 1:5 with linespoints lw 2 title 'pushpin'
set output 'latency.png'
set key bottom right
set multiplot layout 1,2 title 'Latency distribution (open loop, measured from the scheduled send time)'
set logscale xy
set xlabel 'percentile'
set ylabel 'latency (µs)'
set xtics ('50' 2, '90' 10, '99' 100, '99.9' 1000, '99.99' 10000)
set xrange [1:20000]
unset title
set title 'S2 rooms of 100 at half of saturation'
plot 'latency-s2-switchboard-1w.dat' using 1:2 with linespoints title 'switchboard-1w', 'latency-s2-switchboard-2w.dat' using 1:2 with linespoints title 'switchboard-2w', 'latency-s2-node-ws.dat' using 1:2 with linespoints title 'node-ws', 'latency-s2-pushpin.dat' using 1:2 with linespoints title 'pushpin'
set title 'S4 one connection at a fixed rate'
plot 'latency-s4-switchboard-1w.dat' using 1:2 with linespoints title 'switchboard-1w', 'latency-s4-switchboard-2w.dat' using 1:2 with linespoints title 'switchboard-2w', 'latency-s4-node-ws.dat' using 1:2 with linespoints title 'node-ws'
unset multiplot
